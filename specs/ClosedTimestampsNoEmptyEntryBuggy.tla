-------------------- MODULE ClosedTimestampsNoEmptyEntryBuggy --------------------
(***************************************************************************)
(* ClosedTimestamps with a new leader that does not append raft-rs's empty *)
(* entry. Being idle then means only that it applied what it learnt as a   *)
(* follower, and its log may end before an older term's uncommitted entry  *)
(* that another replica holds and a later leader commits: s2 leads term 1, *)
(* appends a (stamp 1, lease 2) and e0 (stamp 2); a commits, e0 stays on   *)
(* s2 alone; s1 wins term 2 with s3's vote holding [a], is idle at once    *)
(* and promises 2 at index 1 (its clock reads 2); s2, whose log is more up *)
(* to date than s1's, wins term 3 with s1's vote and commits e0 at index 2 *)
(* under its own entry. e0 was stamped by term 1's leader, to which a's    *)
(* lease was its own: no floor covered it. TLC must find                   *)
(* NoChangeBelowClosed violated.                                           *)
(***************************************************************************)
EXTENDS ClosedTimestamps

BuggyNext ==
    \/ RaftNext \/ Proposals \/ Promises
    \/ \E s, v \in Servers, t \in 1..MaxTerm, restarted \in BOOLEAN :
         ElectWith(s, v, t, FALSE, restarted)                  \* BUG: no empty entry

BuggySpec == Init /\ [][BuggyNext /\ Record]_vars
=============================================================================

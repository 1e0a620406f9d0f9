--------------------- MODULE ClosedTimestampsEarlyAdoptBuggy ---------------------
(***************************************************************************)
(* ClosedTimestamps with a follower that adopts a side promise of its      *)
(* term's leader without having applied up to the promise's index: the    *)
(* entries between its applied index and the leader's last one were       *)
(* stamped before the promise, possibly at or below it. TLC must find      *)
(* NoChangeBelowClosed violated.                                           *)
(***************************************************************************)
EXTENDS ClosedTimestamps

BuggyNext ==
    \/ RaftNext \/ Elections \/ Proposals
    \/ \E s \in Servers : \E now \in Readings(s) :
         PromiseWith(s, now, Min(Lagged(now), LeaseApplied(s)), TRUE,
                     FALSE)                                 \* BUG: adopted before applied

BuggySpec == Init /\ [][BuggyNext /\ Record]_vars
=============================================================================

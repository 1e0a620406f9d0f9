---------------------- MODULE RaftLeaderElectionBuggy ----------------------
(***************************************************************************)
(* RaftLeaderElection with a server that does not persist its vote: after *)
(* a restart votedFor is forgotten, so it can vote twice in one term (the  *)
(* bug of acknowledging before the hard state is fsynced). TLC must find   *)
(* ElectionSafety violated: two leaders in one term.                       *)
(***************************************************************************)
EXTENDS RaftLeaderElection

RestartForgettingVote(s) ==
    /\ state' = [state EXCEPT ![s] = Follower]
    /\ commitIndex' = [commitIndex EXCEPT ![s] = 0]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {}]
    /\ matchIndex' = [matchIndex EXCEPT ![s] = [t \in Servers |-> 0]]
    /\ votedFor' = [votedFor EXCEPT ![s] = Nil]
    /\ UNCHANGED <<currentTerm, log, messages, ghosts>>

BuggyNext ==
    \/ \E s \in Servers : RestartForgettingVote(s)
    \/ \E s \in Servers : Timeout(s) \/ BecomeLeader(s) \/ AdvanceCommitIndex(s)
    \/ \E s \in Servers, v \in Values : ClientRequest(s, v)
    \/ \E s, t \in Servers : AppendEntries(s, t)
    \/ \E m \in messages :
         \/ Drop(m)
         \/ \E s \in Servers :
              UpdateTerm(s, m) \/ HandleRVReq(s, m) \/ HandleRVResp(s, m)
              \/ HandleAEReq(s, m) \/ HandleAEResp(s, m)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

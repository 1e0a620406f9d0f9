-------------------- MODULE ParallelCommitNoDeadlockBreakBuggy --------------------
(***************************************************************************)
(* ParallelCommit whose wait queue never breaks a deadlock: t1 and t2 each *)
(* hold an intent the other waits on, both coordinators stay up (so their  *)
(* heartbeats never expire and no push recovers either), and they wait     *)
(* forever. TLC must find EveryTxnDecided violated: this liveness check is *)
(* why BreakDeadlock exists.                                               *)
(***************************************************************************)
EXTENDS ParallelCommit

BuggyNext ==
    \/ \E t \in Txns : \/ Coordinator(t) \/ Heartbeat(t) \/ Crash(t)
                       \/ Expire(t) \/ Recovery(t)
    \/ \E t \in Txns, k \in Keys : Resolve(t, k)
    \/ \E r \in Reads : ReadKey(r[1], r[2])
    \/ Finished

BuggyFairness ==
    /\ \A t \in Txns : /\ WF_vars(Coordinator(t))
                       /\ WF_vars(coord[t] = "crashed" /\ Expire(t))
                       /\ WF_vars(Recovery(t))
    /\ \A t \in Txns, k \in Keys : WF_vars(Resolve(t, k))

BuggySpec == Init /\ [][BuggyNext]_vars /\ BuggyFairness
=============================================================================

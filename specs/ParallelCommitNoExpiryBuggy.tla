----------------------- MODULE ParallelCommitNoExpiryBuggy -----------------------
(***************************************************************************)
(* ParallelCommit whose record shards never expire a crashed coordinator's *)
(* heartbeat by themselves (no fairness for Expire): a writer waiting on   *)
(* the crashed transaction's intent never may push it, and both stay       *)
(* undecided although someone waits forever. TLC must find EveryTxnDecided *)
(* violated: this shows that exempting abandoned transactions does not     *)
(* exempt one that anyone waits on.                                        *)
(***************************************************************************)
EXTENDS ParallelCommit

BuggyFairness ==
    /\ \A t \in Txns : /\ WF_vars(Coordinator(t))
                       /\ WF_vars(Recovery(t))
                       /\ WF_vars(BreakDeadlock(t))
    /\ \A t \in Txns, k \in Keys : WF_vars(Resolve(t, k))

BuggySpec == Init /\ [][Next]_vars /\ BuggyFairness
=============================================================================

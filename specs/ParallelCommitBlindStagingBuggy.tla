------------------- MODULE ParallelCommitBlindStagingBuggy -------------------
(***************************************************************************)
(* ParallelCommit whose coordinator writes its STAGING record blindly,     *)
(* over a record that recovery already aborted (the transaction had no     *)
(* record when a pusher found it expired). TLC must find DecisionsAreFinal *)
(* violated: this check is why WriteStaging is conditional on there being  *)
(* no record yet.                                                          *)
(***************************************************************************)
EXTENDS ParallelCommit

WriteStagingBlind(t) ==
    /\ coord[t] = "running" /\ record[t] \in {"pending", "aborted"} /\ ~staged[t]
    /\ record' = [record EXCEPT ![t] = "staging"]
    /\ staged' = [staged EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, acked, recovery, found, missing,
                   expired, read>>

BuggyNext == Next \/ \E t \in Txns : WriteStagingBlind(t)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

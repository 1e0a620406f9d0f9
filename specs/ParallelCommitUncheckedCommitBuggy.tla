----------------- MODULE ParallelCommitUncheckedCommitBuggy -----------------
(***************************************************************************)
(* ParallelCommit whose recovery decides as soon as no checked write was   *)
(* missing, before every listed write was checked: it commits a STAGING    *)
(* transaction one of whose writes is nowhere. TLC must find Atomicity     *)
(* violated: this check is why recovery queries every listed write.        *)
(***************************************************************************)
EXTENDS ParallelCommit

RecoverDecideEarly(t) ==
    /\ recovery[t] = "running" /\ found[t] \cup missing[t] # {}
    /\ record' = IF record[t] = "staging"
                 THEN [record EXCEPT ![t] = IF missing[t] = {} THEN "committed" ELSE "aborted"]
                 ELSE record
    /\ recovery' = [recovery EXCEPT ![t] = "done"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, found, missing,
                   expired, read>>

BuggyRecovery(t) == Pushed(t) \/ RecoverDecideEarly(t) \/ \E k \in Keys : RecoverCheck(t, k)

BuggyNext ==
    \/ \E t \in Txns : \/ Coordinator(t) \/ Heartbeat(t) \/ Crash(t)
                       \/ Expire(t) \/ BreakDeadlock(t) \/ BuggyRecovery(t)
    \/ \E t \in Txns, k \in Keys : Resolve(t, k)
    \/ \E r \in Reads : ReadKey(r[1], r[2])
    \/ Finished

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

------------------------- MODULE ParallelCommitBuggy -------------------------
(***************************************************************************)
(* ParallelCommit with recovery that does not prevent the writes it finds  *)
(* missing: it aborts, while the coordinator, racing it, still writes the  *)
(* missing intent and acknowledges the client. TLC must find               *)
(* AckImpliesCommit violated: this check is why recovery prevents writes.  *)
(***************************************************************************)
EXTENDS ParallelCommit

RecoverCheckNoPrevent(t, k) ==
    /\ recovery[t] = "running" /\ k \in Writes[t] \ (found[t] \cup missing[t])
    /\ IF intent[k] = t \/ InSeq(t, committed[k])
       THEN /\ found' = [found EXCEPT ![t] = found[t] \cup {k}]
            /\ UNCHANGED missing
       ELSE /\ missing' = [missing EXCEPT ![t] = missing[t] \cup {k}]
            /\ UNCHANGED found
    /\ UNCHANGED <<record, intent, committed, prevented, coord, written, staged, acked, recovery,
                   expired, read>>

BuggyRecovery(t) == Pushed(t) \/ RecoverDecide(t) \/ \E k \in Keys : RecoverCheckNoPrevent(t, k)

BuggyNext ==
    \/ \E t \in Txns : \/ Coordinator(t) \/ Heartbeat(t) \/ Crash(t)
                       \/ Expire(t) \/ BreakDeadlock(t) \/ BuggyRecovery(t)
    \/ \E t \in Txns, k \in Keys : Resolve(t, k)
    \/ \E r \in Reads : ReadKey(r[1], r[2])
    \/ Finished

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

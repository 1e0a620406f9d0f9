------------------- MODULE ParallelCommitNoWriteCacheBuggy -------------------
(***************************************************************************)
(* ParallelCommit whose shards forget the timestamp of the last committed  *)
(* write (IntentTable::last_write): an intent is taken under a newer       *)
(* committed write, and the older transaction commits after the newer one  *)
(* on that key. TLC must find NoConflictingCommits violated.               *)
(***************************************************************************)
EXTENDS ParallelCommit

WriteIntentNoWriteCache(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \notin prevented[k] /\ ~BelowRead(t, k)
    /\ intent' = [intent EXCEPT ![k] = t]
    /\ written' = [written EXCEPT ![t] = written[t] \cup {k}]
    /\ UNCHANGED <<record, committed, prevented, coord, staged, acked, recovery, found, missing,
                   expired, read>>

BuggyNext == Next \/ \E t \in Txns, k \in Keys : WriteIntentNoWriteCache(t, k)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

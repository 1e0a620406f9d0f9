------------------- MODULE ParallelCommitNoReadCacheBuggy -------------------
(***************************************************************************)
(* ParallelCommit whose shards keep no read timestamp cache (ReadCache):   *)
(* after k1 was read at timestamp 3 (returning nothing), t1 writes k1 at   *)
(* timestamp 2 and commits, so the read missed a commit below its          *)
(* timestamp. TLC must find NoConflictingCommits (its read clause)         *)
(* violated.                                                               *)
(***************************************************************************)
EXTENDS ParallelCommit

WriteIntentNoReadCache(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \notin prevented[k] /\ ~WriteTooOld(t, k)
    /\ intent' = [intent EXCEPT ![k] = t]
    /\ written' = [written EXCEPT ![t] = written[t] \cup {k}]
    /\ UNCHANGED <<record, committed, prevented, coord, staged, acked, recovery, found, missing,
                   expired, read>>

BuggyNext == Next \/ \E t \in Txns, k \in Keys : WriteIntentNoReadCache(t, k)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

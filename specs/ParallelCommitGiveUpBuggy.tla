--------------------- MODULE ParallelCommitGiveUpBuggy ---------------------
(***************************************************************************)
(* ParallelCommit whose coordinator, finding its heartbeat lapsed (after a *)
(* pause) before it answered the client, gives up: it aborts its own       *)
(* record and stops ("nobody was told it committed, so it may still        *)
(* abort"). But its writes and the STAGING record may all be in place      *)
(* already: the transaction is implicitly committed, and a recovery or a   *)
(* reader may have taken it as committed. TLC must find                    *)
(* ImplicitCommitIsFinal violated: only a coordinator whose own write      *)
(* failed (or that broke a deadlock, so a write is missing) may abort.     *)
(***************************************************************************)
EXTENDS ParallelCommit

GiveUp(t) ==
    /\ coord[t] = "running" /\ expired[t] /\ ~acked[t]
    /\ record[t] \in {"pending", "staging"}
    /\ record' = [record EXCEPT ![t] = "aborted"]
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<intent, committed, prevented, written, staged, acked, recovery, found, missing,
                   expired, read>>

BuggyNext == Next \/ \E t \in Txns : GiveUp(t)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

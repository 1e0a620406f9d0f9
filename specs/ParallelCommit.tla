--------------------------- MODULE ParallelCommit ---------------------------
(***************************************************************************)
(* Parallel commits (CockroachDB's protocol, DESIGN.md "Transactions"):    *)
(* a coordinator writes its intents and a STAGING transaction record in    *)
(* parallel; the transaction is implicitly committed once the record and   *)
(* every intent are replicated, and the client is acknowledged then. The   *)
(* record is made COMMITTED and the intents resolved afterwards.           *)
(*                                                                         *)
(* Anyone who meets an intent may run recovery, racing a live or crashed   *)
(* coordinator: read the record; if it has none, abort it; if STAGING,     *)
(* check every listed write, *preventing* each missing one at the          *)
(* transaction's timestamp (so the coordinator can no longer write it),    *)
(* then commit if all were found and abort otherwise.                      *)
(*                                                                         *)
(* Several transactions with fixed timestamps write overlapping keys; a    *)
(* write waits while another transaction's intent is on its key, and fails *)
(* (the transaction aborts) if the key already holds a committed write at  *)
(* a higher timestamp or the write was prevented.                          *)
(*                                                                         *)
(* Actions ↔ code (issue 4+): WriteIntent/WriteStaging/Ack/MakeExplicit ~  *)
(* the coordinator actor; Resolve ~ intent resolution; Recover* ~ the      *)
(* recovery procedure run by whoever meets an intent.                      *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS Txns,    \* transaction ids
          Keys,    \* keys (each on its own shard)
          Writes,  \* Writes[t]: the keys t writes (its in-flight writes list)
          TS       \* TS[t]: t's commit timestamp (distinct per transaction)

ASSUME \A t \in Txns : Writes[t] # {} /\ Writes[t] \subseteq Keys
ASSUME \A t, u \in Txns : t # u => TS[t] # TS[u]

None == "none"

VARIABLES record,     \* record[t]: "pending" (none yet), "staging", "committed", "aborted"
          intent,     \* intent[k]: the transaction whose intent is on k, or None
          committed,  \* committed[k]: sequence of transactions whose writes k holds
          prevented,  \* prevented[k]: transactions whose write to k recovery prevented
          coord,      \* coord[t]: "running", "crashed" or "failed"
          written,    \* written[t]: keys whose intent t's coordinator wrote successfully
          staged,     \* staged[t]: t's coordinator wrote its STAGING record successfully
          acked,      \* acked[t]: the client was told "committed"
          recovery,   \* recovery[t]: "idle", "running" or "done"
          found,      \* found[t]: keys recovery found t's write on
          missing     \* missing[t]: keys recovery found t's write missing on (and prevented)

vars == <<record, intent, committed, prevented, coord, written, staged, acked, recovery, found, missing>>

InSeq(t, s) == \E i \in 1..Len(s) : s[i] = t

TypeOK ==
    /\ record \in [Txns -> {"pending", "staging", "committed", "aborted"}]
    /\ intent \in [Keys -> Txns \cup {None}]
    /\ prevented \in [Keys -> SUBSET Txns]
    /\ coord \in [Txns -> {"running", "crashed", "failed"}]
    /\ written \in [Txns -> SUBSET Keys]
    /\ staged \in [Txns -> BOOLEAN]
    /\ acked \in [Txns -> BOOLEAN]
    /\ recovery \in [Txns -> {"idle", "running", "done"}]

Init ==
    /\ record = [t \in Txns |-> "pending"]
    /\ intent = [k \in Keys |-> None]
    /\ committed = [k \in Keys |-> <<>>]
    /\ prevented = [k \in Keys |-> {}]
    /\ coord = [t \in Txns |-> "running"]
    /\ written = [t \in Txns |-> {}]
    /\ staged = [t \in Txns |-> FALSE]
    /\ acked = [t \in Txns |-> FALSE]
    /\ recovery = [t \in Txns |-> "idle"]
    /\ found = [t \in Txns |-> {}]
    /\ missing = [t \in Txns |-> {}]

-------------------------------------------------------------------------------
\* Coordinator of t.

\* A committed write at a higher timestamp already on k: t's write must not go under it.
WriteTooOld(t, k) == \E i \in 1..Len(committed[k]) : TS[committed[k][i]] > TS[t]

WriteIntent(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \notin prevented[k] /\ ~WriteTooOld(t, k)
    /\ intent' = [intent EXCEPT ![k] = t]
    /\ written' = [written EXCEPT ![t] = written[t] \cup {k}]
    /\ UNCHANGED <<record, committed, prevented, coord, staged, acked, recovery, found, missing>>

\* The write is refused: recovery prevented it, or a newer committed write is there.
WriteFails(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \in prevented[k] \/ WriteTooOld(t, k)
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found, missing>>

\* The STAGING record, in parallel with the intents. It cannot be written over a record
\* that recovery already aborted.
WriteStaging(t) ==
    /\ coord[t] = "running" /\ record[t] = "pending"
    /\ record' = [record EXCEPT ![t] = "staging"]
    /\ staged' = [staged EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, acked, recovery, found, missing>>

\* The coordinator's own writes all succeeded: the record was STAGED and every intent
\* written, so the transaction is implicitly committed. Tell the client. (The coordinator
\* does not re-read the record: it acts on what its writes returned, as in CockroachDB.)
Ack(t) ==
    /\ coord[t] = "running" /\ ~acked[t]
    /\ staged[t] /\ written[t] = Writes[t]
    /\ acked' = [acked EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<record, intent, committed, prevented, coord, written, staged, recovery, found, missing>>

MakeExplicit(t) ==
    /\ coord[t] = "running" /\ acked[t] /\ record[t] = "staging"
    /\ record' = [record EXCEPT ![t] = "committed"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, recovery, found, missing>>

\* A coordinator whose write failed aborts its own transaction (if still undecided).
AbortSelf(t) ==
    /\ coord[t] = "failed" /\ record[t] \in {"pending", "staging"}
    /\ record' = [record EXCEPT ![t] = "aborted"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, recovery, found, missing>>

Crash(t) ==
    /\ coord[t] = "running"
    /\ coord' = [coord EXCEPT ![t] = "crashed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found, missing>>

-------------------------------------------------------------------------------
\* Anyone: resolve the intents of a decided transaction.

Resolve(t, k) ==
    /\ intent[k] = t /\ record[t] \in {"committed", "aborted"}
    /\ intent' = [intent EXCEPT ![k] = None]
    /\ committed' = IF record[t] = "committed"
                    THEN [committed EXCEPT ![k] = Append(committed[k], t)]
                    ELSE committed
    /\ UNCHANGED <<record, prevented, coord, written, staged, acked, recovery, found, missing>>

\* Anyone meeting t's intent (or its record): recovery.

RecoverStart(t) ==
    /\ recovery[t] = "idle" /\ record[t] \in {"pending", "staging"}
    /\ IF record[t] = "pending"
       THEN /\ record' = [record EXCEPT ![t] = "aborted"]       \* no record: abort it
            /\ recovery' = [recovery EXCEPT ![t] = "done"]
       ELSE /\ recovery' = [recovery EXCEPT ![t] = "running"]
            /\ UNCHANGED record
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, found, missing>>

\* Check one listed write; if it is missing, prevent it at t's timestamp (atomically, as
\* CockroachDB's QueryIntent with prevent does on the key's leaseholder).
RecoverCheck(t, k) ==
    /\ recovery[t] = "running" /\ k \in Writes[t] \ (found[t] \cup missing[t])
    /\ IF intent[k] = t \/ InSeq(t, committed[k])
       THEN /\ found' = [found EXCEPT ![t] = found[t] \cup {k}]
            /\ UNCHANGED <<prevented, missing>>
       ELSE /\ prevented' = [prevented EXCEPT ![k] = prevented[k] \cup {t}]
            /\ missing' = [missing EXCEPT ![t] = missing[t] \cup {k}]
            /\ UNCHANGED found
    /\ UNCHANGED <<record, intent, committed, coord, written, staged, acked, recovery>>

\* Decide from what was found; only a record still STAGING is changed.
RecoverDecide(t) ==
    /\ recovery[t] = "running" /\ found[t] \cup missing[t] = Writes[t]
    /\ record' = IF record[t] = "staging"
                 THEN [record EXCEPT ![t] = IF missing[t] = {} THEN "committed" ELSE "aborted"]
                 ELSE record
    /\ recovery' = [recovery EXCEPT ![t] = "done"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, found, missing>>

-------------------------------------------------------------------------------
Coordinator(t) ==
    \/ \E k \in Keys : WriteIntent(t, k) \/ WriteFails(t, k)
    \/ WriteStaging(t) \/ Ack(t) \/ MakeExplicit(t) \/ AbortSelf(t)

Recovery(t) == RecoverStart(t) \/ RecoverDecide(t) \/ \E k \in Keys : RecoverCheck(t, k)

Finished ==
    /\ \A t \in Txns : record[t] \in {"committed", "aborted"}
    /\ \A k \in Keys : intent[k] = None
    /\ UNCHANGED vars

Next ==
    \/ \E t \in Txns : Coordinator(t) \/ Crash(t) \/ Recovery(t)
    \/ \E t \in Txns, k \in Keys : Resolve(t, k)
    \/ Finished

\* Coordinators that stay up keep working; recovery and resolution always happen
\* eventually (coordinator heartbeats expire, readers meet intents). Crashes are not fair.
Fairness ==
    /\ \A t \in Txns : WF_vars(Coordinator(t)) /\ WF_vars(Recovery(t))
    /\ \A t \in Txns, k \in Keys : WF_vars(Resolve(t, k))

Spec == Init /\ [][Next]_vars /\ Fairness

-------------------------------------------------------------------------------
\* The model the .cfg files check (a TLC config cannot write functions): t1 writes k1 and k2
\* at timestamp 2; t2 writes k1 at timestamp 3 (after t1); t3 writes k2 at timestamp 1
\* (before t1, so it must not commit under t1's write).
ModelWrites == [t \in Txns |-> CASE t = "t1" -> {"k1", "k2"} [] t = "t2" -> {"k1"} [] OTHER -> {"k2"}]
ModelTS == [t \in Txns |-> CASE t = "t1" -> 2 [] t = "t2" -> 3 [] OTHER -> 1]

-------------------------------------------------------------------------------
\* Safety.

\* All or nothing: a committed transaction's writes are all present (as intents still to be
\* resolved, or resolved); an aborted one's are nowhere.
Atomicity ==
    \A t \in Txns :
        /\ record[t] = "committed" => \A k \in Writes[t] : intent[k] = t \/ InSeq(t, committed[k])
        /\ record[t] = "aborted" => \A k \in Keys : ~InSeq(t, committed[k])

\* CockroachDB's AckImpliesCommit: a client told "committed" is never contradicted.
AckImpliesCommit == \A t \in Txns : acked[t] => record[t] \in {"staging", "committed"}

\* Implicitly committed: the record is STAGING and every listed write is present.
ImplicitlyCommitted(t) ==
    record[t] = "staging" /\ \A k \in Writes[t] : intent[k] = t \/ InSeq(t, committed[k])

\* No step, by the coordinator or by recovery, aborts an implicitly committed transaction.
ImplicitCommitIsFinal == [][\A t \in Txns : ImplicitlyCommitted(t) => record'[t] # "aborted"]_vars

\* Recovery and coordinator never disagree: a decided record never changes.
DecisionsAreFinal ==
    [][\A t \in Txns : record[t] \in {"committed", "aborted"} => record'[t] = record[t]]_vars

\* On every key, committed writes are in timestamp order and no two conflicting
\* transactions both committed a write under the other.
NoConflictingCommits ==
    \A k \in Keys : \A i, j \in 1..Len(committed[k]) :
        i < j => TS[committed[k][i]] < TS[committed[k][j]]

\* Liveness.
AckedBecomeCommitted == \A t \in Txns : acked[t] ~> record[t] = "committed"
ImplicitBecomesExplicit == \A t \in Txns : ImplicitlyCommitted(t) ~> record[t] = "committed"
IntentsResolved == \A t \in Txns, k \in Keys : intent[k] = t ~> intent[k] # t
EveryTxnDecided == \A t \in Txns : <>(record[t] \in {"committed", "aborted"})
=============================================================================

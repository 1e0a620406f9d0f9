--------------------------- MODULE ParallelCommit ---------------------------
(***************************************************************************)
(* Parallel commits (CockroachDB's protocol, DESIGN.md "Transactions"):    *)
(* a coordinator writes its intents and a STAGING transaction record in    *)
(* parallel; the transaction is implicitly committed once the record and   *)
(* every intent are replicated, and the client is acknowledged then. The   *)
(* record is made COMMITTED and the intents resolved afterwards.           *)
(*                                                                         *)
(* A running coordinator heartbeats its transaction; a crashed (or paused) *)
(* one lets it expire. A write that meets another transaction's intent     *)
(* waits on it and, once the owner is expired, pushes it: the pusher runs  *)
(* recovery, racing a live or crashed coordinator: read the record; if it  *)
(* has none, abort it; if STAGING, check every listed write, *preventing*  *)
(* each missing one at the transaction's timestamp (so the coordinator can *)
(* no longer write it), then commit if all were found and abort otherwise. *)
(* A cycle of waiters is broken by its youngest transaction aborting.      *)
(*                                                                         *)
(* Transactions have fixed timestamps. A write fails (the transaction      *)
(* aborts) if the key holds a committed write at a timestamp >= its own    *)
(* (the write timestamp cache), a read at a timestamp >= its own (the read *)
(* timestamp cache) or a prevention. Linearizable reads at fixed           *)
(* timestamps wait on intents at or below their timestamp and return the   *)
(* newest committed write at or below it.                                  *)
(*                                                                         *)
(* Actions ↔ code (core/src/txn): see specs/README.md "ParallelCommit".    *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS Txns,    \* transaction ids
          Keys,    \* keys (each on its own shard)
          Writes,  \* Writes[t]: the keys t writes (its in-flight writes list)
          TS,      \* TS[t]: t's commit timestamp (distinct per transaction)
          Reads    \* linearizable reads, each a pair <<key, timestamp>> (done at most once)

ASSUME \A t \in Txns : Writes[t] # {} /\ Writes[t] \subseteq Keys
ASSUME \A t, u \in Txns : t # u => TS[t] # TS[u]
ASSUME \A t \in Txns : TS[t] \in Nat \ {0}
ASSUME \A r \in Reads : r[1] \in Keys /\ r[2] \in Nat

None == "none"
NotRead == "unread"

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
          missing,    \* missing[t]: keys recovery found t's write missing on (and prevented)
          expired,    \* expired[t]: t's heartbeat expired (its coordinator crashed or paused)
          read        \* read[r]: NotRead, or what read r returned (a transaction or None)

vars == <<record, intent, committed, prevented, coord, written, staged, acked, recovery,
          found, missing, expired, read>>

InSeq(t, s) == \E i \in 1..Len(s) : s[i] = t
SetMax(S) == CHOOSE x \in S : \A y \in S : y <= x
Decided(t) == record[t] \in {"committed", "aborted"}

TypeOK ==
    /\ record \in [Txns -> {"pending", "staging", "committed", "aborted"}]
    /\ intent \in [Keys -> Txns \cup {None}]
    /\ \A k \in Keys : committed[k] \in Seq(Txns)
    /\ prevented \in [Keys -> SUBSET Txns]
    /\ coord \in [Txns -> {"running", "crashed", "failed"}]
    /\ written \in [Txns -> SUBSET Keys]
    /\ staged \in [Txns -> BOOLEAN]
    /\ acked \in [Txns -> BOOLEAN]
    /\ recovery \in [Txns -> {"idle", "running", "done"}]
    /\ found \in [Txns -> SUBSET Keys]
    /\ missing \in [Txns -> SUBSET Keys]
    /\ expired \in [Txns -> BOOLEAN]
    /\ read \in [Reads -> Txns \cup {None, NotRead}]

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
    /\ expired = [t \in Txns |-> FALSE]
    /\ read = [r \in Reads |-> NotRead]

-------------------------------------------------------------------------------
\* The timestamp caches of k's shard (IntentTable::last_write, ReadCache).

\* The timestamp of the newest committed write on k (0: none).
LastWriteTS(k) == SetMax({0} \cup {TS[committed[k][i]] : i \in 1..Len(committed[k])})
\* The highest timestamp k was read at (0: never read).
ReadTS(k) == SetMax({0} \cup {r[2] : r \in {r \in Reads : r[1] = k /\ read[r] # NotRead}})

\* t's write on k would go at or under a committed write or a read: refused.
WriteTooOld(t, k) == TS[t] <= LastWriteTS(k)
BelowRead(t, k) == TS[t] <= ReadTS(k)

-------------------------------------------------------------------------------
\* Wait queue: t's write to k (sent, not yet written: the coordinator sends all its writes
\* at once) met another transaction's intent and waits until it is resolved. A crashed or
\* failed coordinator's writes wait no more.

Waiting(t) == IF coord[t] = "running"
              THEN {k \in Writes[t] \ written[t] : intent[k] \notin {None, t}}
              ELSE {}
WaitsFor(u, t) == \E k \in Waiting(u) : intent[k] = t
Waited(t) == \E u \in Txns : WaitsFor(u, t)

\* The waits-for graph and its transitive closure (paths of up to |Txns| edges).
WaitEdges == {e \in Txns \X Txns : WaitsFor(e[1], e[2])}
RECURSIVE Paths(_, _)
Paths(E, n) == IF n <= 1 THEN E
               ELSE LET P == Paths(E, n - 1)
                    IN E \cup {e \in Txns \X Txns :
                                  \E m \in Txns : <<e[1], m>> \in P /\ <<m, e[2]>> \in E}
Reaches == Paths(WaitEdges, Cardinality(Txns))
InCycle(t) == <<t, t>> \in Reaches
\* t's strongly connected component of the waits-for graph.
Cycle(t) == {t} \cup {u \in Txns : <<t, u>> \in Reaches /\ <<u, t>> \in Reaches}

-------------------------------------------------------------------------------
\* Coordinator of t.

WriteIntent(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \notin prevented[k] /\ ~WriteTooOld(t, k) /\ ~BelowRead(t, k)
    /\ intent' = [intent EXCEPT ![k] = t]
    /\ written' = [written EXCEPT ![t] = written[t] \cup {k}]
    /\ UNCHANGED <<record, committed, prevented, coord, staged, acked, recovery, found, missing,
                   expired, read>>

\* The write is refused: recovery prevented it, or a committed write or a read at t's
\* timestamp or above is on k.
WriteFails(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \in prevented[k] \/ WriteTooOld(t, k) \/ BelowRead(t, k)
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* The STAGING record, in parallel with the intents. It cannot be written over a record
\* that recovery already aborted.
WriteStaging(t) ==
    /\ coord[t] = "running" /\ record[t] = "pending"
    /\ record' = [record EXCEPT ![t] = "staging"]
    /\ staged' = [staged EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, acked, recovery, found, missing,
                   expired, read>>

\* The coordinator's own writes all succeeded: the record was STAGED and every intent
\* written, so the transaction is implicitly committed. Tell the client. (The coordinator
\* does not re-read the record: it acts on what its writes returned, as in CockroachDB.)
Ack(t) ==
    /\ coord[t] = "running" /\ ~acked[t]
    /\ staged[t] /\ written[t] = Writes[t]
    /\ acked' = [acked EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<record, intent, committed, prevented, coord, written, staged, recovery, found,
                   missing, expired, read>>

MakeExplicit(t) ==
    /\ coord[t] = "running" /\ acked[t] /\ record[t] = "staging"
    /\ record' = [record EXCEPT ![t] = "committed"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* A coordinator whose write failed aborts its own transaction (if still undecided).
AbortSelf(t) ==
    /\ coord[t] = "failed" /\ record[t] \in {"pending", "staging"}
    /\ record' = [record EXCEPT ![t] = "aborted"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* A coordinator that was paused heartbeats again: its transaction is alive once more.
\* (Once recovery started, it goes on, safe against a live coordinator, and expiry matters
\* no more: only Push reads it, and only before recovery. So the model leaves out
\* heartbeats then, and the states they would make that differ in nothing else.)
Heartbeat(t) ==
    /\ coord[t] = "running" /\ expired[t] /\ ~Decided(t) /\ recovery[t] = "idle"
    /\ expired' = [expired EXCEPT ![t] = FALSE]
    /\ UNCHANGED <<record, intent, committed, prevented, coord, written, staged, acked, recovery,
                   found, missing, read>>

Crash(t) ==
    /\ coord[t] = "running"
    /\ coord' = [coord EXCEPT ![t] = "crashed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found,
                   missing, expired, read>>

-------------------------------------------------------------------------------
\* The record's shard: t's heartbeat expires. Always after a crash; also, at any time, for a
\* running coordinator (a pause longer than the expiry: it goes on afterwards).
Expire(t) ==
    /\ ~expired[t] /\ ~Decided(t)
    /\ expired' = [expired EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<record, intent, committed, prevented, coord, written, staged, acked, recovery,
                   found, missing, read>>

\* Wait queue: t is in a cycle of waiters and is its youngest member: it gives up (then
\* aborts itself).
BreakDeadlock(t) ==
    /\ coord[t] = "running" /\ InCycle(t)
    /\ \A u \in Cycle(t) : TS[u] <= TS[t]
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* Wait queue, wait-die (what the implementation does instead of finding cycles): t's write
\* met the intent of an older transaction (a lower timestamp): t's coordinator gives up at
\* once rather than wait (then aborts itself). Every remaining wait is then on a younger
\* holder, so no cycle forms; BreakDeadlock stays for a queue that does wait on older ones.
Die(t) ==
    /\ coord[t] = "running"
    /\ \E k \in Waiting(t) : TS[intent[k]] < TS[t]
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* Anyone: resolve the intents of a decided transaction.
Resolve(t, k) ==
    /\ intent[k] = t /\ Decided(t)
    /\ intent' = [intent EXCEPT ![k] = None]
    /\ committed' = IF record[t] = "committed"
                    THEN [committed EXCEPT ![k] = Append(committed[k], t)]
                    ELSE committed
    /\ UNCHANGED <<record, prevented, coord, written, staged, acked, recovery, found, missing,
                   expired, read>>

\* A linearizable read of k at ts, on k's shard: it waits while an intent at or below ts is
\* on k (it never sees provisional values), returns the newest committed write at or below
\* ts and raises k's read timestamp cache to ts.
NewestAtOrBelow(s, ts) ==
    LET below == {s[i] : i \in {i \in 1..Len(s) : TS[s[i]] <= ts}}
    IN IF below = {} THEN None ELSE CHOOSE t \in below : \A u \in below : TS[u] <= TS[t]

ReadBlocked(k, ts) == intent[k] # None /\ TS[intent[k]] <= ts

ReadKey(k, ts) ==
    /\ read[<<k, ts>>] = NotRead
    /\ ~ReadBlocked(k, ts)
    /\ read' = [read EXCEPT ![<<k, ts>>] = NewestAtOrBelow(committed[k], ts)]
    /\ UNCHANGED <<record, intent, committed, prevented, coord, written, staged, acked, recovery,
                   found, missing, expired>>

-------------------------------------------------------------------------------
\* Recovery, by a pusher: RecoverStart is only ever taken by Push.

RecoverStart(t) ==
    /\ recovery[t] = "idle" /\ record[t] \in {"pending", "staging"}
    /\ IF record[t] = "pending"
       THEN /\ record' = [record EXCEPT ![t] = "aborted"]       \* no record: abort it
            /\ recovery' = [recovery EXCEPT ![t] = "done"]
       ELSE /\ recovery' = [recovery EXCEPT ![t] = "running"]
            /\ UNCHANGED record
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, found, missing,
                   expired, read>>

\* u waits on t's intent and t is expired: u recovers t.
Push(u, t) == WaitsFor(u, t) /\ expired[t] /\ RecoverStart(t)

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
    /\ UNCHANGED <<record, intent, committed, coord, written, staged, acked, recovery, expired,
                   read>>

\* Decide from what was found; only a record still STAGING is changed.
RecoverDecide(t) ==
    /\ recovery[t] = "running" /\ found[t] \cup missing[t] = Writes[t]
    /\ record' = IF record[t] = "staging"
                 THEN [record EXCEPT ![t] = IF missing[t] = {} THEN "committed" ELSE "aborted"]
                 ELSE record
    /\ recovery' = [recovery EXCEPT ![t] = "done"]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, staged, acked, found, missing,
                   expired, read>>

-------------------------------------------------------------------------------
Coordinator(t) ==
    \/ \E k \in Keys : WriteIntent(t, k) \/ WriteFails(t, k)
    \/ WriteStaging(t) \/ Ack(t) \/ MakeExplicit(t) \/ AbortSelf(t)

Pushed(t) == \E u \in Txns : Push(u, t)
Recovery(t) == Pushed(t) \/ RecoverDecide(t) \/ \E k \in Keys : RecoverCheck(t, k)

\* Nothing is left to do: every transaction is decided or abandoned (crashed, nobody
\* waiting on it) and every decided intent is resolved. (A crashed transaction that nobody
\* ever meets stays undecided, as in the implementation; reads are optional.)
Finished ==
    /\ \A t \in Txns : Decided(t) \/ (coord[t] = "crashed" /\ ~Waited(t))
    /\ \A t \in Txns, k \in Keys : Decided(t) => intent[k] # t
    /\ UNCHANGED vars

Next ==
    \/ \E t \in Txns : \/ Coordinator(t) \/ Heartbeat(t) \/ Crash(t)
                       \/ Expire(t) \/ BreakDeadlock(t) \/ Die(t) \/ Recovery(t)
    \/ \E t \in Txns, k \in Keys : Resolve(t, k)
    \/ \E r \in Reads : ReadKey(r[1], r[2])
    \/ Finished

\* Coordinators that stay up keep working; a crashed coordinator's heartbeat expires; a
\* waiter pushes an expired owner; recovery, deadlock breaking, wait-die and resolution (by the
\* coordinator or whoever meets the intent) happen eventually. Crashes, pauses, heartbeats
\* after a pause and reads are not fair.
Fairness ==
    /\ \A t \in Txns : /\ WF_vars(Coordinator(t))
                       /\ WF_vars(coord[t] = "crashed" /\ Expire(t))
                       /\ WF_vars(Recovery(t))
                       /\ WF_vars(BreakDeadlock(t))
                       /\ WF_vars(Die(t))
    /\ \A t \in Txns, k \in Keys : WF_vars(Resolve(t, k))

Spec == Init /\ [][Next]_vars /\ Fairness

-------------------------------------------------------------------------------
\* The models the .cfg files check (a TLC config cannot write functions or tuples).
\* ModelWrites/ModelTS/ModelReads: t1 and t2 both write k1 and k2 (so they can deadlock),
\* at timestamps 2 and 4; t3 (3-transaction config) writes k2 at timestamp 1, under both;
\* one read of k1 at timestamp 3, between t1 and t2.
ModelWrites == [t \in Txns |-> CASE t = "t1" -> {"k1", "k2"} [] t = "t2" -> {"k1", "k2"}
                                 [] OTHER -> {"k2"}]
ModelTS == [t \in Txns |-> CASE t = "t1" -> 2 [] t = "t2" -> 4 [] OTHER -> 1]
ModelReads == {<<"k1", 3>>}
\* FreeWrites/FreeTS/FreeReads: no conflicts at all: t1 writes k1 at 2, t2 writes k2 at 4,
\* and k1 is read at 1, under t1 (NoConflictCommits is not vacuous here).
FreeWrites == [t \in Txns |-> IF t = "t1" THEN {"k1"} ELSE {"k2"}]
FreeTS == [t \in Txns |-> IF t = "t1" THEN 2 ELSE 4]
FreeReads == {<<"k1", 1>>}

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
    [][\A t \in Txns : Decided(t) => record'[t] = record[t]]_vars

\* Serializability: the committed transactions, run one after another in timestamp order,
\* give every key's history and every read's result.
\* - On every key, the resolved writes are the first ones of the key's committed writers in
\*   timestamp order (the rest, committed but not yet resolved, all come after them): the
\*   history of k is the timestamp-ordered sequence of committed transactions writing k.
\* - Every read returned the newest committed write to its key at or below its timestamp,
\*   and no commit at or below it comes later (that is what the read cache prevents).
CommittedWriters(k) == {t \in Txns : record[t] = "committed" /\ k \in Writes[t]}
NewestCommittedAtOrBelow(k, ts) ==
    LET below == {t \in CommittedWriters(k) : TS[t] <= ts}
    IN IF below = {} THEN None ELSE CHOOSE t \in below : \A u \in below : TS[u] <= TS[t]

NoConflictingCommits ==
    /\ \A k \in Keys :
        LET c == committed[k] IN
        /\ \A i, j \in 1..Len(c) : i < j => TS[c[i]] < TS[c[j]]
        /\ \A i \in 1..Len(c) : c[i] \in CommittedWriters(k)
        /\ \A t \in CommittedWriters(k) : InSeq(t, c) \/ \A i \in 1..Len(c) : TS[c[i]] < TS[t]
    /\ \A r \in Reads : read[r] # NotRead => read[r] = NewestCommittedAtOrBelow(r[1], r[2])

-------------------------------------------------------------------------------
\* Liveness (under Fairness). Each is stated as "eventually always": TLC checks those
\* without a tableau (a `~>` with a stable left side says the same: decisions and crashes
\* are final, an acknowledgement too, and an implicit commit ends only in COMMITTED).

\* Nobody waits on t's intent any more, and its coordinator is gone: t may stay undecided.
Abandoned(t) == coord[t] = "crashed" /\ ~Waited(t)

\* Every transaction is decided, unless its coordinator crashed and from some point on no
\* transaction waits on it. (So a transaction whose coordinator stays up is decided, and so
\* is one that anyone waits on forever.)
EveryTxnDecided == \A t \in Txns : <>[](Decided(t) \/ Abandoned(t))

\* A transaction that conflicts with nothing (no other transaction writes its keys, no read
\* is at or above its timestamp on them) and whose coordinator does not crash commits.
Conflicting(t) ==
    \/ \E u \in Txns \ {t} : Writes[u] \cap Writes[t] # {}
    \/ \E r \in Reads : r[1] \in Writes[t] /\ r[2] >= TS[t]
NoConflictCommits ==
    \A t \in {t \in Txns : ~Conflicting(t)} :
        <>[](record[t] = "committed" \/ coord[t] = "crashed")

\* An acknowledged transaction becomes COMMITTED, and none stays implicitly committed,
\* unless its coordinator crashed (then EveryTxnDecided with AckImpliesCommit or
\* ImplicitCommitIsFinal says it is committed once someone waits on it).
AckedBecomeCommitted ==
    \A t \in Txns : <>[](acked[t] => record[t] = "committed" \/ coord[t] = "crashed")
ImplicitBecomesExplicit ==
    \A t \in Txns : <>[](ImplicitlyCommitted(t) => coord[t] = "crashed")
\* No decided transaction's intent stays forever.
IntentsResolved == \A t \in Txns, k \in Keys : <>[]~(intent[k] = t /\ Decided(t))
=============================================================================

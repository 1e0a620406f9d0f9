------------------------ MODULE ParallelCommitTrace ------------------------
(***************************************************************************)
(* Trace validation of treesync's transactions against ParallelCommit.     *)
(*                                                                         *)
(* `treesync sim --seed S --txn-trace TxnTrace.tla` writes module TxnTrace *)
(* (sim/src/txn_trace.rs), which defines:                                  *)
(*   TraceTxns    the transactions, "t1", "t2", ... (one per attempt: a    *)
(*                retry is a new transaction);                             *)
(*   TraceKeys    the keys (strings);                                      *)
(*   TraceWrites  [t \in TraceTxns |-> the keys t writes]: ALL of them,    *)
(*                as planned, also those never written nor refused (never  *)
(*                empty: ParallelCommit ASSUMEs it);                       *)
(*   TraceTS      [t \in TraceTxns |-> its rank in (timestamp, id) order], *)
(*                distinct, from 1;                                        *)
(*   TraceEvents  a sequence of [kind, t, k, result] records, "none" where *)
(*                a field does not apply, in the order the shards' logs    *)
(*                applied them (the client's answers and crashes where     *)
(*                they happened).                                          *)
(* A key is a unit of conflict: two transactions' writes to one key        *)
(* conflict (lock a common path), writes to different keys do not, and a   *)
(* transaction writes a key at most once (one intent per transaction per   *)
(* key). Keys may be shards only if that holds for shards.                 *)
(*                                                                         *)
(* What this asks of the recorder beyond the first draft of the format:    *)
(* 1. TraceWrites from each transaction's plan (not from its events: a     *)
(*    transaction that dies or crashes early shows only some, or none).    *)
(* 2. Keys that are units of conflict. For the bank, an account per key    *)
(*    ("a<i>"): with 8 shards a1 and a5 share shard 1, a2 and a4 shard 3,  *)
(*    so two transfers can hold intents on one shard at once, and a        *)
(*    committed write to one account makes no write to the other too old.  *)
(*    (Or pin each account to a shard of its own in trace runs.)           *)
(* 3. WriteRefused's result says why: "closed", "tooold" or "rejected"     *)
(*    (IntentRefusal::Closed, TooOld, Rejected/Full); "none" is accepted   *)
(*    but leaves "closed" unchecked.                                       *)
(* 4. One WriteIntent per applied intent: a resent copy accepted again     *)
(*    (the shard already held it) is no event (tolerated as a no-op).      *)
(*                                                                         *)
(* Events (kind: fields) and the step each one is:                         *)
(*  WriteIntent: t, k    k applied t's intent: WriteIntent(t, k); for a    *)
(*         coordinator that already failed, LateWriteIntent (below); a     *)
(*         resent copy of an intent k holds: no step.                      *)
(*  WriteRefused: t, k, result "closed" (prevented by recovery, or t       *)
(*         already resolved there), "tooold", "rejected" (a precondition,  *)
(*         no room) or "none" (not said): k refused t's intent for a       *)
(*         reason other than another transaction's intent (those wait: no  *)
(*         event). "closed" is checked: t is prevented on k or decided.    *)
(*         The coordinator fails: WriteFails(t, k), or RefusedUnmodelled   *)
(*         where the cause lies outside the model (plain writes, the tree, *)
(*         the horizon). A late refusal (of a copy after its intent was    *)
(*         resolved, or once the coordinator failed or t is decided): no   *)
(*         step; nor, possibly, one the coordinator does not take as final *)
(*         (another copy was lost and may land: it sends QueryIntent).     *)
(*         Also a leader's refusal before proposing (below its closed      *)
(*         timestamp): it is in no log, but it is a refusal all the same.  *)
(*  WriteStaging: t      the anchor applied t's STAGING record (accepted   *)
(*         only): WriteStaging(t), or LateWriteStaging for a failed        *)
(*         coordinator.                                                    *)
(*  Ack: t               the client was told t committed: Ack(t), never    *)
(*         after Crash(t).                                                 *)
(*  MakeExplicit: t      the coordinator's COMMITTED: MakeExplicit(t).     *)
(*  AbortSelf: t         the coordinator's ABORTED (a tombstone if there   *)
(*         was no record): AbortSelf(t). Its coordinator must have failed: *)
(*         by a WriteRefused, or by a hidden Die(t) (wait-die: it met an   *)
(*         older transaction's intent) or WaitTimeout(t) (it waited the    *)
(*         most times the implementation allows, WAITS_MAX).               *)
(*  Resolve: t, k, result "committed"/"aborted"   k resolved t's intent    *)
(*         (only when one was there): Resolve(t, k), the record saying so. *)
(*  Crash: t             t's coordinator's server crashed, t undecided: no *)
(*         step of the spec, but no Ack(t) after it (see below).           *)
(*  RecoverStart: t, result   the anchor's answer to a pusher:             *)
(*         "alive": no step (t undecided);                                 *)
(*         "aborted": RecoverStart(t) of a record-less t (after a hidden   *)
(*                    Expire(t)), or no step if t is already ABORTED;      *)
(*         "staging": RecoverStart(t) (after a hidden Expire(t)), or no    *)
(*                    step if a recovery of t already runs;                *)
(*         "committed": no step (t is COMMITTED).                          *)
(*  RecoverCheck: t, k, result "found"/"prevented"   RecoverCheck(t, k)    *)
(*         with that result, or, for a key a recovery of t already         *)
(*         checked, no step with the result the state gives.               *)
(*  QueryIntent: t, k, result "found"/"prevented"   t's coordinator asked  *)
(*         k whether its intent is there (a copy of it was lost, so it may *)
(*         land after the refusal of a later copy): "found": no step (its  *)
(*         WriteIntent came before); "prevented": QueryPrevents(t, k).     *)
(*  RecoverDecide: t, result "committed"/"aborted"   RecoverDecide(t), the *)
(*         record saying result afterwards (already decided by the         *)
(*         coordinator: unchanged), or no step when a recovery of t        *)
(*         already decided and the record says result.                     *)
(* "No step": the event changes no variable of the spec (it checks what it *)
(* says against the state); in the implementation too it changes nothing   *)
(* the spec models.                                                        *)
(*                                                                         *)
(* Where the implementation goes beyond the spec, and how this module      *)
(* takes it (each a spec action with one guard dropped, or a no-op):       *)
(* - A crash is not the spec's Crash: the steps its coordinator had sent   *)
(*   still land afterwards (intents, the record, COMMITTED, ABORTED), so   *)
(*   the spec's coordinator is left as it was (a spec behaviour whose      *)
(*   Crash comes after the trace) and the variable `down` keeps Ack out.   *)
(* - A failed coordinator's intents and record still land (sent before it  *)
(*   failed, or while it still waits on other keys): LateWriteIntent and   *)
(*   LateWriteStaging, WriteIntent and WriteStaging without               *)
(*   coord[t] = "running". (Safe: Ack needs a running coordinator.)        *)
(* - RefusedUnmodelled, WaitTimeout: see above.                            *)
(* - A refusal is of one copy of an intent; an earlier copy whose outcome  *)
(*   was lost may land later. Counting such a refusal as the write's       *)
(*   failure let a coordinator abort a transaction whose intents all       *)
(*   landed late beside its STAGING record: implicitly committed           *)
(*   (ImplicitCommitIsFinal; seeds 22 and 27 of the simulator). So the     *)
(*   coordinator first asks the shard (QueryIntent, RecoverCheck's         *)
(*   prevention on the coordinator's behalf): QueryPrevents.               *)
(* - The pusher is not checked: plain writes and reads push too, and so    *)
(*   does a failed coordinator still waiting (PushedByAnyone: Push(u, t)   *)
(*   without WaitsFor(u, t)).                                              *)
(* - Several recoveries of one transaction may run (one per server; a      *)
(*   recovery that lost a step is started again): the spec's one recovery  *)
(*   is their union, and a later one's steps on what is already checked or *)
(*   decided are no-ops (above).                                           *)
(*                                                                         *)
(* Hidden steps, taken only when needed, and deterministic: one Expire(t)  *)
(* before a RecoverStart that recovers t; one Die(t) or WaitTimeout(t) per *)
(* transaction, as soon as it waits, if an AbortSelf(t) is still to come   *)
(* (see MustFail). So there are at most #events + 2 * #transactions       *)
(* steps. Heartbeats are never needed (nothing checks that a transaction   *)
(* is not expired: "alive" is a no-op).                                    *)
(*                                                                         *)
(* The trace is accepted iff TLC finds TraceNotMatched VIOLATED: some      *)
(* behaviour matched every event. "No error has been found" means          *)
(* rejected; the first event no behaviour matched is TraceEvents[m + 1],   *)
(* m the largest index TLC printed as <<"matched", m>> (0 if none;         *)
(* specs/trace.py reports it). Run TLC with -difftrace: an accepted trace  *)
(* is printed as the behaviour that matched it, each state's changes only. *)
(* The protocol's invariants and action properties are checked along the  *)
(* way.                                                                    *)
(***************************************************************************)
EXTENDS ParallelCommit, TxnTrace, TLC

\* The implementation's reads carry no timestamp (no read cache yet): no reads.
TraceReads == {}

VARIABLES l,     \* the next event of TraceEvents to match
          down   \* down[t]: t's coordinator's server crashed (Crash(t) was matched)

traceVars == <<vars, l, down>>

\* The transactions with an AbortSelf event, and the index of each one's last: only a
\* transaction with one to come may fail by a hidden step. (Constants: TLC computes them
\* once.)
AbortEvents == {i \in 1..Len(TraceEvents) : TraceEvents[i].kind = "AbortSelf"}
Aborting == {TraceEvents[i].t : i \in AbortEvents} \cap Txns
AbortAt == [t \in Aborting |-> SetMax({i \in AbortEvents : TraceEvents[i].t = t})]

TraceInit == Init /\ l = 1 /\ down = [t \in Txns |-> FALSE]

-------------------------------------------------------------------------------
\* The implementation's steps the spec lacks (see the header).

\* WriteIntent(t, k) without coord[t] = "running": t's coordinator failed, its intent lands.
LateWriteIntent(t, k) ==
    /\ coord[t] = "failed" /\ k \in Writes[t] \ written[t]
    /\ intent[k] = None
    /\ t \notin prevented[k] /\ ~WriteTooOld(t, k) /\ ~BelowRead(t, k)
    /\ intent' = [intent EXCEPT ![k] = t]
    /\ written' = [written EXCEPT ![t] = written[t] \cup {k}]
    /\ UNCHANGED <<record, committed, prevented, coord, staged, acked, recovery, found, missing,
                   expired, read>>

\* WriteStaging(t) without coord[t] = "running".
LateWriteStaging(t) ==
    /\ coord[t] = "failed" /\ record[t] = "pending"
    /\ record' = [record EXCEPT ![t] = "staging"]
    /\ staged' = [staged EXCEPT ![t] = TRUE]
    /\ UNCHANGED <<intent, committed, prevented, coord, written, acked, recovery, found, missing,
                   expired, read>>

\* WriteFails(t, k) without its cause (nor intent[k] = None): the shard refused for a reason
\* the model does not have.
RefusedUnmodelled(t, k) ==
    /\ coord[t] = "running" /\ k \in Writes[t] \ written[t]
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* Die(t) without the age condition: t waited too often (WAITS_MAX) and gives up.
WaitTimeout(t) ==
    /\ coord[t] = "running" /\ Waiting(t) # {}
    /\ coord' = [coord EXCEPT ![t] = "failed"]
    /\ UNCHANGED <<record, intent, committed, prevented, written, staged, acked, recovery, found,
                   missing, expired, read>>

\* Push(u, t) without WaitsFor(u, t): whoever pushed, t is expired and recovery starts.
PushedByAnyone(t) == expired[t] /\ RecoverStart(t)

-------------------------------------------------------------------------------
\* One event, one step (or a no-op: UNCHANGED vars).

Present(t, k) == intent[k] = t \/ InSeq(t, committed[k])

DoWriteIntent(t, k) ==
    \/ WriteIntent(t, k)
    \/ LateWriteIntent(t, k)
    \/ intent[k] = t /\ k \in written[t] /\ UNCHANGED vars       \* a resent copy

DoWriteRefused(t, k, why) ==
    /\ k \in Writes[t]
    /\ why \in {"closed", "tooold", "rejected", "none"}
    /\ why = "closed" => t \in prevented[k] \/ Decided(t)
    /\ IF k \in written[t]
       \* a copy arriving after its intent was resolved: the shard closed t
       THEN /\ why \in {"closed", "none"} /\ intent[k] # t /\ Decided(t)
            /\ UNCHANGED vars
       ELSE IF coord[t] = "running" /\ ~Decided(t)
            \* a refusal of one copy while another may land: the coordinator queries first
            THEN WriteFails(t, k) \/ RefusedUnmodelled(t, k) \/ UNCHANGED vars
            ELSE UNCHANGED vars                                  \* the coordinator is past it

DoWriteStaging(t) == WriteStaging(t) \/ LateWriteStaging(t)

\* t's coordinator's QueryIntent found no intent on k: k prevents it, as RecoverCheck does,
\* and the coordinator fails (that refusal is final now). Safe: it only removes behaviours
\* (WriteIntent and LateWriteIntent need t \notin prevented[k]).
QueryPrevents(t, k) ==
    /\ ~Present(t, k)
    /\ prevented' = [prevented EXCEPT ![k] = prevented[k] \cup {t}]
    /\ coord' = IF coord[t] = "running" THEN [coord EXCEPT ![t] = "failed"] ELSE coord
    /\ UNCHANGED <<record, intent, committed, written, staged, acked, recovery, found, missing,
                   expired, read>>

DoQueryIntent(t, k, r) ==
    /\ r \in {"found", "prevented"} /\ k \in Writes[t]
    /\ IF r = "found" THEN Present(t, k) /\ UNCHANGED vars ELSE QueryPrevents(t, k)

DoRecoverStart(t, r) ==
    CASE r = "alive"     -> record[t] \in {"pending", "staging"} /\ UNCHANGED vars
      [] r = "aborted"   -> \/ record[t] = "pending" /\ PushedByAnyone(t)
                            \/ record[t] = "aborted" /\ UNCHANGED vars
      [] r = "staging"   -> \/ record[t] = "staging" /\ PushedByAnyone(t)
                            \/ record[t] = "staging" /\ recovery[t] = "running" /\ UNCHANGED vars
      [] r = "committed" -> record[t] = "committed" /\ UNCHANGED vars
      [] OTHER           -> FALSE

DoRecoverCheck(t, k, r) ==
    /\ r \in {"found", "prevented"}
    /\ IF recovery[t] = "running" /\ k \in Writes[t] \ (found[t] \cup missing[t])
       THEN RecoverCheck(t, k) /\ (r = "found") = (k \in found'[t])
       ELSE /\ k \in found[t] \cup missing[t]                    \* checked again
            /\ (r = "found") = Present(t, k)
            /\ UNCHANGED vars

DoRecoverDecide(t, r) ==
    /\ r \in {"committed", "aborted"}
    /\ \/ RecoverDecide(t) /\ record'[t] = r
       \/ recovery[t] = "done" /\ record[t] = r /\ UNCHANGED vars  \* decided again

Do(e) ==
    LET t == e.t
        k == e.k
    IN /\ t \in Txns
       /\ e.kind \in {"WriteIntent", "WriteRefused", "Resolve", "RecoverCheck", "QueryIntent"}
            => k \in Keys
       /\ CASE e.kind = "WriteIntent"   -> DoWriteIntent(t, k)
            [] e.kind = "WriteRefused"  -> DoWriteRefused(t, k, e.result)
            [] e.kind = "WriteStaging"  -> DoWriteStaging(t)
            [] e.kind = "Ack"           -> ~down[t] /\ Ack(t)
            [] e.kind = "MakeExplicit"  -> MakeExplicit(t)
            [] e.kind = "AbortSelf"     -> AbortSelf(t)
            [] e.kind = "Resolve"       -> Resolve(t, k) /\ record[t] = e.result
            [] e.kind = "Crash"         -> ~down[t] /\ ~Decided(t) /\ UNCHANGED vars
            [] e.kind = "RecoverStart"  -> DoRecoverStart(t, e.result)
            [] e.kind = "RecoverCheck"  -> DoRecoverCheck(t, k, e.result)
            [] e.kind = "RecoverDecide" -> DoRecoverDecide(t, e.result)
            [] e.kind = "QueryIntent"   -> DoQueryIntent(t, k, e.result)
            [] OTHER                    -> FALSE
       /\ down' = IF e.kind = "Crash" THEN [down EXCEPT ![t] = TRUE] ELSE down

\* Transactions with an AbortSelf to come that wait: they fail now, by a hidden Die or
\* WaitTimeout, before the next event. Failing as early as possible loses no behaviour:
\* "failed" instead of "running" only disables Ack(t) and MakeExplicit(t), which cannot come
\* before an AbortSelf(t) (AckImpliesCommit, DecisionsAreFinal), and makes a WriteRefused
\* of t a no-op instead of a failure. So the hidden failures are deterministic.
MustFail == {t \in Aborting : AbortAt[t] >= l /\ coord[t] = "running" /\ Waiting(t) # {}}

\* The hidden steps before the next event e (see the header): the failures first, one at a
\* time, then the Expire that a RecoverStart recovering e.t needs.
Hidden(e) ==
    IF MustFail # {}
    THEN LET t == CHOOSE t \in MustFail : TRUE IN Die(t) \/ WaitTimeout(t)
    ELSE /\ e.kind = "RecoverStart" /\ e.result \in {"aborted", "staging"}
         /\ e.t \in Txns /\ recovery[e.t] = "idle"
         /\ Expire(e.t)

TraceNext ==
    \/ /\ l <= Len(TraceEvents)
       /\ \/ /\ MustFail = {}
             /\ Do(TraceEvents[l])
             /\ l' = l + 1
             /\ PrintT(<<"matched", l>>)     \* for the report: the first unmatched is the next
          \/ /\ Hidden(TraceEvents[l])
             /\ UNCHANGED <<l, down>>
    \* Every event matched: one more step ends the trace. (TLC reports an invariant broken by
    \* a state before an action property broken by the step into it, so without this step
    \* a property violated by the last event would read as an accepted trace.)
    \/ /\ l = Len(TraceEvents) + 1
       /\ l' = l + 1
       /\ UNCHANGED <<vars, down>>

TraceSpec == TraceInit /\ [][TraceNext]_traceVars

\* Violated exactly when the whole trace was matched: the trace is accepted.
TraceNotMatched == l <= Len(TraceEvents) + 1
=============================================================================

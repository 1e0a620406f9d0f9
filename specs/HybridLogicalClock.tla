------------------------- MODULE HybridLogicalClock -------------------------
(***************************************************************************)
(* Hybrid Logical Clocks (Kulkarni, Demirbas, Madappa, Avva, Leone 2014,   *)
(* "Logical Physical Clocks"), as core/src/hlc.rs implements them, plus    *)
(* treesync's max-offset guard.                                            *)
(*                                                                         *)
(* Processes have physical clocks pt that tick forward. Correct processes  *)
(* stay within Eps of each other; Faulty ones may run arbitrarily far      *)
(* ahead. A process sends a message stamped with its HLC (Send, the        *)
(* paper's "send or local event") and receives messages (Receive, the      *)
(* paper's receive rule). A receiver rejects a message whose l is more     *)
(* than MaxOffset ahead of its own pt (Reject), as Hlc::update does.       *)
(*                                                                         *)
(* As in the paper, a process's physical clock ticks at least once between *)
(* two of its events (needed for the bound on c). The implementation does  *)
(* not rely on this: it carries a full counter into l (see hlc.rs).        *)
(*                                                                         *)
(* Maps to code: Send ~ Hlc::now, Receive ~ Hlc::update (Ok),              *)
(* Reject ~ Hlc::update (Err RemoteTooFarAhead).                           *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets

CONSTANTS Correct,    \* processes whose physical clocks respect the drift bound
          Faulty,     \* processes whose clocks may jump ahead
          Eps,        \* max skew between correct physical clocks
          MaxOffset,  \* the receive guard (>= Eps)
          MaxPt,      \* bound on correct physical clocks (keeps the model finite)
          FaultyAhead,\* how far past MaxPt a faulty clock may run
          MaxSends    \* bound on messages sent

ASSUME MaxOffset >= Eps

Procs == Correct \cup Faulty

VARIABLES pt,        \* physical clock
          l, c,      \* HLC: l = max physical time heard of, c = logical counter
          ticked,    \* pt advanced since this process's last event
          msgs,      \* messages in flight: [src, dst, l, c]
          sends,     \* how many messages were sent
          lastRecv   \* ghost: <<l, c>> of the last message each process accepted

vars == <<pt, l, c, ticked, msgs, sends, lastRecv>>

Max(a, b) == IF a > b THEN a ELSE b
Max3(a, b, d) == Max(a, Max(b, d))
LexLess(x, y) == x[1] < y[1] \/ (x[1] = y[1] /\ x[2] < y[2])

TypeOK ==
    /\ pt \in [Procs -> Nat] /\ l \in [Procs -> Nat] /\ c \in [Procs -> Nat]
    /\ ticked \in [Procs -> BOOLEAN]
    /\ sends \in 0..MaxSends

Init ==
    /\ pt = [p \in Procs |-> 0]
    /\ l = [p \in Procs |-> 0]
    /\ c = [p \in Procs |-> 0]
    /\ ticked = [p \in Procs |-> TRUE]
    /\ msgs = {}
    /\ sends = 0
    /\ lastRecv = [p \in Procs |-> <<0, 0>>]

\* A correct clock ticks only while it stays within Eps of every other correct clock.
TickCorrect(p) ==
    /\ pt[p] < MaxPt
    /\ \A q \in Correct : pt[p] + 1 - pt[q] <= Eps
    /\ pt' = [pt EXCEPT ![p] = pt[p] + 1]
    /\ ticked' = [ticked EXCEPT ![p] = TRUE]
    /\ UNCHANGED <<l, c, msgs, sends, lastRecv>>

\* A faulty clock may jump ahead by any amount.
TickFaulty(p) ==
    /\ \E t \in (pt[p] + 1)..(MaxPt + FaultyAhead) :
         pt' = [pt EXCEPT ![p] = t]
    /\ ticked' = [ticked EXCEPT ![p] = TRUE]
    /\ UNCHANGED <<l, c, msgs, sends, lastRecv>>

\* Send (or local) event: l' = max(l, pt); c' = c + 1 if l did not change, else 0.
Send(p, q) ==
    /\ p # q /\ ticked[p] /\ sends < MaxSends
    /\ LET nl == Max(l[p], pt[p])
           nc == IF nl = l[p] THEN c[p] + 1 ELSE 0
       IN /\ l' = [l EXCEPT ![p] = nl]
          /\ c' = [c EXCEPT ![p] = nc]
          /\ msgs' = msgs \cup {[src |-> p, dst |-> q, l |-> nl, c |-> nc]}
    /\ sends' = sends + 1
    /\ ticked' = [ticked EXCEPT ![p] = FALSE]
    /\ UNCHANGED <<pt, lastRecv>>

\* The receive rule of the paper, behind the max-offset guard.
ReceiveRule(p, m) ==
    LET nl == Max3(l[p], m.l, pt[p])
        nc == IF nl = l[p] /\ nl = m.l THEN Max(c[p], m.c) + 1
              ELSE IF nl = l[p] THEN c[p] + 1
              ELSE IF nl = m.l THEN m.c + 1
              ELSE 0
    IN /\ l' = [l EXCEPT ![p] = nl]
       /\ c' = [c EXCEPT ![p] = nc]
       /\ msgs' = msgs \ {m}
       /\ lastRecv' = [lastRecv EXCEPT ![p] = <<m.l, m.c>>]
       /\ ticked' = [ticked EXCEPT ![p] = FALSE]
       /\ UNCHANGED <<pt, sends>>

Receive(p, m) ==
    /\ m \in msgs /\ m.dst = p /\ ticked[p]
    /\ m.l <= pt[p] + MaxOffset
    /\ ReceiveRule(p, m)

Reject(p, m) ==
    /\ m \in msgs /\ m.dst = p
    /\ m.l > pt[p] + MaxOffset
    /\ msgs' = msgs \ {m}
    /\ UNCHANGED <<pt, l, c, ticked, sends, lastRecv>>

Done == sends = MaxSends /\ msgs = {} /\ UNCHANGED vars

Next ==
    \/ \E p \in Correct : TickCorrect(p)
    \/ \E p \in Faulty : TickFaulty(p)
    \/ \E p, q \in Procs : Send(p, q)
    \/ \E p \in Procs, m \in msgs : Receive(p, m) \/ Reject(p, m)
    \/ Done
    \/ \A p \in Correct : pt[p] = MaxPt /\ UNCHANGED vars   \* time ran out

Spec == Init /\ [][Next]_vars

-------------------------------------------------------------------------------
\* Properties.

\* Each process's timestamps never go back, and every event moves them forward.
Monotonic ==
    [][\A p \in Procs :
         (<<l'[p], c'[p]>> # <<l[p], c[p]>>) => LexLess(<<l[p], c[p]>>, <<l'[p], c'[p]>>)]_vars
EventsAdvance ==
    [][\A p \in Procs : (ticked[p] /\ ~ticked'[p]) => LexLess(<<l[p], c[p]>>, <<l'[p], c'[p]>>)]_vars

\* Causality: a receive is stamped after the send it receives (ts(send) < ts(recv)).
Causality == \A p \in Procs : LexLess(lastRecv[p], <<l[p], c[p]>>) \/ lastRecv[p] = <<0, 0>>

\* The paper's bound on l: a correct process's l is never more than the offset bound ahead
\* of its physical clock (Eps when everyone is correct; the guard keeps MaxOffset when
\* faulty clocks run ahead).
BoundedDrift == \A p \in Correct : l[p] <= pt[p] + MaxOffset

\* The paper's bound on c (Theorem 2 in spirit: c is bounded by the number of processes
\* times the skew window, since pt ticks between events).
BoundedCounter == \A p \in Correct : c[p] <= Cardinality(Procs) * (MaxOffset + 1)

\* Messages from beyond the offset are never adopted.
GuardHolds == \A p \in Correct : lastRecv[p][1] <= pt[p] + MaxOffset
=============================================================================

----------------------- MODULE HybridLogicalClockBuggy -----------------------
(***************************************************************************)
(* HybridLogicalClock without the max-offset guard: a receiver adopts any  *)
(* remote timestamp, so a faulty clock far ahead drags correct processes'  *)
(* l away from physical time. TLC must find BoundedDrift violated.         *)
(***************************************************************************)
EXTENDS HybridLogicalClock

ReceiveUnguarded(p, m) == m \in msgs /\ m.dst = p /\ ticked[p] /\ ReceiveRule(p, m)

BuggyNext ==
    \/ \E p \in Correct : TickCorrect(p)
    \/ \E p \in Faulty : TickFaulty(p)
    \/ \E p, q \in Procs : Send(p, q)
    \/ \E p \in Procs, m \in msgs : ReceiveUnguarded(p, m)
    \/ Done
    \/ \A p \in Correct : pt[p] = MaxPt /\ UNCHANGED vars

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

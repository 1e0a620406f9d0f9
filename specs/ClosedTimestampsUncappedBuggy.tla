---------------------- MODULE ClosedTimestampsUncappedBuggy ----------------------
(***************************************************************************)
(* ClosedTimestamps with side promises of clock - Lag alone, not capped by *)
(* the greatest applied lease. s2 leads term 1 and commits its empty entry *)
(* (no lease); s1 wins term 2 and stamps x at 1 (its clock at 0, its floor *)
(* 0); s2, deposed without knowing it, reads 2 on its clock and promises 1 *)
(* at index 1 (capped: 0, no promise); x commits at index 3. TLC must find *)
(* NoChangeBelowClosed violated.                                           *)
(***************************************************************************)
EXTENDS ClosedTimestamps

BuggyNext ==
    \/ RaftNext \/ Elections \/ Proposals
    \/ \E s \in Servers : \E now \in Readings(s) :
         PromiseWith(s, now, Lagged(now), TRUE, TRUE)                  \* BUG: no lease cap

BuggySpec == Init /\ [][BuggyNext /\ Record]_vars
=============================================================================

---------------------- MODULE ClosedTimestampsNoFloorBuggy ----------------------
(***************************************************************************)
(* ClosedTimestamps with a new leader whose floor is 0: it stamps above    *)
(* the stamps in its log and its own promises, but not above the leases in *)
(* its log (the simulator's --inject new-leader-ignores-lease). s2 leads   *)
(* term 1 and commits a (stamp 1, lease 2) at index 2; s1 wins term 2 with *)
(* s3's vote; s2, deposed without knowing it, is idle and promises 2 (its  *)
(* clock reads 3) at index 2; s1, its clock at 0, stamps x at 2 (its floor *)
(* would have made it 3) and commits it at index 4. TLC must find          *)
(* NoChangeBelowClosed violated.                                           *)
(***************************************************************************)
EXTENDS ClosedTimestamps

BuggyNext ==
    \/ RaftNext \/ Elections \/ Promises
    \/ \E s \in Servers : \E now \in Readings(s) : ProposeWith(s, now, 0)   \* BUG: no floor

BuggySpec == Init /\ [][BuggyNext /\ Record]_vars
=============================================================================

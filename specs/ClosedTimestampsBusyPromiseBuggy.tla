-------------------- MODULE ClosedTimestampsBusyPromiseBuggy --------------------
(***************************************************************************)
(* ClosedTimestamps with a leader that side-promises while entries of its  *)
(* log are not applied yet (side_promise without `applied >= last`). Its   *)
(* followers still wait to apply its last index, but the leader's own      *)
(* closed timestamp counts the promise at once, while an entry it stamped  *)
(* earlier, at or below the promise, is still to be applied. TLC must find *)
(* NoChangeBelowClosed violated.                                           *)
(***************************************************************************)
EXTENDS ClosedTimestamps

BuggyNext ==
    \/ RaftNext \/ Elections \/ Proposals
    \/ \E s \in Servers : \E now \in Readings(s) :
         PromiseWith(s, now, Min(Lagged(now), LeaseApplied(s)), FALSE,
                     TRUE)                                  \* BUG: not only when idle

BuggySpec == Init /\ [][BuggyNext /\ Record]_vars
=============================================================================

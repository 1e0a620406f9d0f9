----------------------------- MODULE NodeTreeGen -----------------------------
(***************************************************************************)
(* NodeTree for test generation (specs/gen_tests.py): the same protocol    *)
(* with one more ghost variable, `accepted`, the spec's verdict on the op  *)
(* of the last step (Valid(lastOp') in the state it met, the predicate     *)
(* RejectedOpsChangeNothing uses). A valid op that changes nothing (a      *)
(* rename to the same name, a move to the same parent) and a rejected op   *)
(* look alike in parent and name; `accepted` tells the generated tests     *)
(* which outcome the implementation must report.                           *)
(***************************************************************************)
EXTENDS NodeTree

VARIABLE accepted

GenInit == Init /\ accepted = TRUE

\* Next first: lastOp' must be bound before Valid reads it.
GenNext == Next /\ accepted' = Valid(lastOp')

GenSpec == GenInit /\ [][GenNext]_<<vars, accepted>>
=============================================================================

-------------------------- MODULE NodeTreeBuggy --------------------------
(***************************************************************************)
(* NodeTree with a deliberately broken Move that skips the cycle check     *)
(* (moving a node below its own descendant). TLC must find IsTree violated.*)
(***************************************************************************)
EXTENDS NodeTree

MoveValidNoCycleCheck(n, p) ==
    /\ n # Root /\ InTree(n) /\ InTree(p)
    /\ NameFree(p, name[n], n)

BuggyApplyMove(n, p) ==
    Step([kind |-> "move", n |-> n, p |-> p], MoveValidNoCycleCheck(n, p), DoMove(n, p))

BuggyNext ==
    \/ \E n \in Nodes, p \in All, nm \in Names : ApplyCreate(n, p, nm)
    \/ \E n \in Nodes : ApplyDelete(n)
    \/ \E n \in Nodes, p \in All : BuggyApplyMove(n, p)
    \/ \E n \in Nodes, nm \in Names : ApplyRename(n, nm)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

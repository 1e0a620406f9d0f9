---------------------------- MODULE NodeTree ----------------------------
(***************************************************************************)
(* The tree state machine of core/src/tree: Create / Delete / Move /       *)
(* Rename submitted concurrently by many clients and applied one at a time *)
(* through a serial log (the shard's Raft log), in any order. Every op is  *)
(* validated against the state it meets; an invalid op is rejected and     *)
(* changes nothing.                                                        *)
(*                                                                         *)
(* Maps to code: ApplyCreate ~ Tree::create, ApplyDelete ~ Tree::delete,   *)
(* ApplyMove ~ Tree::move_node, ApplyRename ~ Tree::rename; IsTree ~       *)
(* Tree::check_invariants.                                                 *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, TLC

CONSTANTS Nodes,   \* node identities that may exist besides the root
          Names    \* names they may take

Root == "root"
None == "none"
All == Nodes \cup {Root}

VARIABLES parent,  \* parent[n]: a node of All, or None when n is not in the tree
          name,    \* name[n]: n's name (meaningful while n is in the tree)
          lastOp   \* ghost: the op of the last log entry, for RejectedOpsChangeNothing

vars == <<parent, name, lastOp>>

InTree(n) == n = Root \/ parent[n] # None

\* Ancestors by following parent links at most |Nodes| times.
RECURSIVE AncestorsUpTo(_, _)
AncestorsUpTo(n, k) ==
    IF k = 0 \/ n = Root \/ parent[n] = None THEN {}
    ELSE {parent[n]} \cup AncestorsUpTo(parent[n], k - 1)
Ancestors(n) == AncestorsUpTo(n, Cardinality(Nodes) + 1)

IsDescendantOrSelf(d, n) == d = n \/ n \in Ancestors(d)

Children(p) == {c \in Nodes : parent[c] = p}
NameFree(p, nm, except) == \A c \in Children(p) \ {except} : name[c] # nm

TypeOK ==
    /\ parent \in [Nodes -> All \cup {None}]
    /\ name \in [Nodes -> Names]

Init ==
    /\ parent = [n \in Nodes |-> None]
    /\ name \in [Nodes -> Names]
    /\ lastOp = [kind |-> "none"]

-------------------------------------------------------------------------------
\* Validity of each op in the state it meets (the checks the code makes).
CreateValid(n, p, nm) == ~InTree(n) /\ InTree(p) /\ NameFree(p, nm, n)
DeleteValid(n) == n # Root /\ InTree(n)
MoveValid(n, p) ==
    /\ n # Root /\ InTree(n) /\ InTree(p)
    /\ ~IsDescendantOrSelf(p, n)                 \* no cycle
    /\ NameFree(p, name[n], n)
RenameValid(n, nm) == n # Root /\ InTree(n) /\ NameFree(parent[n], nm, n)

\* Effects, applied only when valid.
DoCreate(n, p, nm) == parent' = [parent EXCEPT ![n] = p] /\ name' = [name EXCEPT ![n] = nm]
DoDelete(n) ==
    /\ parent' = [c \in Nodes |-> IF IsDescendantOrSelf(c, n) THEN None ELSE parent[c]]
    /\ UNCHANGED name
DoMove(n, p) == parent' = [parent EXCEPT ![n] = p] /\ UNCHANGED name
DoRename(n, nm) == name' = [name EXCEPT ![n] = nm] /\ UNCHANGED parent

\* One log entry: apply when valid, otherwise reject (tree unchanged). The log is unbounded:
\* TLC explores every reachable tree under every order of ops.
Step(op, valid, effect) ==
    /\ lastOp' = op
    /\ IF valid THEN effect ELSE UNCHANGED <<parent, name>>

ApplyCreate(n, p, nm) ==
    Step([kind |-> "create", n |-> n, p |-> p, nm |-> nm], CreateValid(n, p, nm), DoCreate(n, p, nm))
ApplyDelete(n) == Step([kind |-> "delete", n |-> n], DeleteValid(n), DoDelete(n))
ApplyMove(n, p) == Step([kind |-> "move", n |-> n, p |-> p], MoveValid(n, p), DoMove(n, p))
ApplyRename(n, nm) ==
    Step([kind |-> "rename", n |-> n, nm |-> nm], RenameValid(n, nm), DoRename(n, nm))

Next ==
    \/ \E n \in Nodes, p \in All, nm \in Names : ApplyCreate(n, p, nm)
    \/ \E n \in Nodes : ApplyDelete(n)
    \/ \E n \in Nodes, p \in All : ApplyMove(n, p)
    \/ \E n \in Nodes, nm \in Names : ApplyRename(n, nm)

Spec == Init /\ [][Next]_vars

Symmetry == Permutations(Nodes)

-------------------------------------------------------------------------------
\* Properties.

\* Every node in the tree reaches the root through parents in the tree (no cycle,
\* no orphan), and siblings have distinct names.
NoCycle == \A n \in Nodes : InTree(n) => Root \in Ancestors(n)
ParentInTree == \A n \in Nodes : InTree(n) => InTree(parent[n])
UniqueSiblingNames ==
    \A a, b \in Nodes : (a # b /\ InTree(a) /\ InTree(b) /\ parent[a] = parent[b]) => name[a] # name[b]
IsTree == NoCycle /\ ParentInTree /\ UniqueSiblingNames

\* Was `op` valid in the current (unprimed) state?
Valid(op) ==
    CASE op.kind = "create" -> CreateValid(op.n, op.p, op.nm)
      [] op.kind = "delete" -> DeleteValid(op.n)
      [] op.kind = "move"   -> MoveValid(op.n, op.p)
      [] op.kind = "rename" -> RenameValid(op.n, op.nm)
      [] OTHER              -> TRUE

\* An op that was invalid in the state it met changed nothing (an action property:
\* Valid(lastOp') is evaluated in the state before the step).
RejectedOpsChangeNothing ==
    [][~Valid(lastOp') => UNCHANGED <<parent, name>>]_vars
=============================================================================

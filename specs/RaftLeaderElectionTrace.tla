--------------------- MODULE RaftLeaderElectionTrace ----------------------
(***************************************************************************)
(* Trace validation of treesync's Raft against RaftLeaderElection.         *)
(*                                                                         *)
(* `treesync sim --seed S --trace RaftTrace.tla` runs the simulator and    *)
(* writes module RaftTrace: `Trace`, the run's Raft steps as actions of    *)
(* RaftLeaderElection (mapping in sim/src/trace.rs), each with the values  *)
(* the acting server must hold afterwards (-1 / "" when unchecked). Each   *)
(* step below is one action of the protocol spec AND matches Trace[l].     *)
(*                                                                         *)
(* The trace is accepted iff TLC prints "TRACE ACCEPTED" (the step that  *)
(* matches the last event prints it): some behaviour of the spec matched   *)
(* every event. Otherwise depth - 1 events matched, so Trace[depth] is the *)
(* first step the spec does not allow. The protocol's invariants are       *)
(* checked along the way too. (Recipe: shared/notes/TLC.md; specs/trace.py *)
(* runs it.)                                                               *)
(***************************************************************************)
EXTENDS RaftLeaderElection, RaftTrace

VARIABLE l   \* the next event of Trace to match

TraceInit == Init /\ l = 1

\* What the acting server holds after the event's action.
Expect(e) ==
    LET s == e.node IN
    /\ e.term = -1 \/ currentTerm'[s] = e.term
    /\ e.role = "" \/ state'[s] = e.role
    /\ e.vote = "" \/ votedFor'[s] = e.vote
    /\ e.len = -1 \/ (Len(log'[s]) = e.len /\ LastTerm(log'[s]) = e.last)
    /\ e.commit = -1 \/ commitIndex'[s] = e.commit

\* A message to e.node from e.peer in term e.term, of type t (messages are never removed:
\* the simulator's losses are behaviours in which the spec never receives them).
From(e, t) == {m \in messages : m.mtype = t /\ m.mdest = e.node /\ m.msource = e.peer
                                /\ m.mterm = e.term}

Do(e) ==
    LET s == e.node IN
    CASE e.kind = "Timeout"            -> Timeout(s)
      [] e.kind = "UpdateTerm"         -> \E m \in messages : m.mterm = e.term /\ UpdateTerm(s, m)
      [] e.kind = "HandleRVReq"        -> \E m \in From(e, "RVReq") : HandleRVReq(s, m)
      [] e.kind = "HandleRVResp"       -> \E m \in From(e, "RVResp") : m.mgranted /\ HandleRVResp(s, m)
      [] e.kind = "BecomeLeader"       -> BecomeLeader(s)
      [] e.kind = "StepDown"           -> StepDown(s)
      [] e.kind = "ClientRequest"      -> \E v \in Values : ClientRequest(s, v)
      [] e.kind = "AppendEntries"      -> /\ currentTerm[s] = e.term
                                          /\ SendAppend(s, e.peer, e.index, e.n)
      [] e.kind = "HandleAEReq"        -> \E m \in From(e, "AEReq") :
                                             /\ m.mprevLogIndex = e.index /\ Len(m.mentries) = e.n
                                             /\ HandleAEReq(s, m)
      [] e.kind = "HandleAEResp"       -> \E m \in From(e, "AEResp") :
                                             /\ m.msuccess /\ m.mmatchIndex = e.index
                                             /\ HandleAEResp(s, m)
      [] e.kind = "AdvanceCommitIndex" -> AdvanceCommitIndex(s)
      [] e.kind = "Restart"            -> Restart(s)
      [] OTHER                         -> FALSE

\* The last event matched prints the verdict (evaluated only once the step is sure to be
\* taken). Not an invariant violation: TLC would print the whole behaviour, every state with
\* its set of messages, which took 6 times as long as the search on a 3,600-event trace.
TraceNext ==
    /\ l <= Len(Trace)
    /\ Do(Trace[l])
    /\ Expect(Trace[l])
    /\ l' = l + 1
    /\ l = Len(Trace) => PrintT("TRACE ACCEPTED: every event matched")

TraceSpec == TraceInit /\ [][TraceNext]_<<vars, l>>
=============================================================================

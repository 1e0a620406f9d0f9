----------------- MODULE RaftLeaderElectionLogMatchingBuggy -----------------
(***************************************************************************)
(* RaftLeaderElection's log model (LogSpec) with a follower that skips the *)
(* AppendEntries consistency check: it accepts an entry after prevLogIndex *)
(* without comparing its own entry there with prevLogTerm (Figure 2,       *)
(* receiver step 2). A follower holding an entry of an old term at index 1 *)
(* then takes a newer leader's entry at index 2, and TLC must find         *)
(* LogMatching violated: same index and term, different logs before it.    *)
(***************************************************************************)
EXTENDS RaftLeaderElection

\* HandleAEReq without the prevLogTerm comparison (it still needs prevLogIndex entries).
HandleAEReqNoPrevCheck(s, m) ==
    /\ m.mtype = "AEReq" /\ m.mdest = s /\ m.mterm <= currentTerm[s]
    /\ LET prev == m.mprevLogIndex
           logOk == prev <= Len(log[s])            \* BUG: log[s][prev].term is never compared
           reply(ok, match) == [mtype |-> "AEResp", mterm |-> currentTerm[s], msuccess |-> ok,
                                mmatchIndex |-> match, msource |-> s, mdest |-> m.msource]
       IN IF m.mterm < currentTerm[s] \/ ~logOk
          THEN /\ Send(reply(FALSE, 0))
               /\ IF m.mterm = currentTerm[s] THEN BecomeFollower(s)
                  ELSE UNCHANGED <<state, votesGranted, matchIndex>>
               /\ UNCHANGED <<persisted, commitIndex, ghosts>>
          ELSE LET index == prev + Len(m.mentries)
                   newLog == IF m.mentries = <<>> THEN log[s]
                             ELSE IF Len(log[s]) >= index /\ log[s][index].term = m.mentries[1].term
                                  THEN log[s]
                                  ELSE Append(SubSeq(log[s], 1, prev), m.mentries[1])
               IN /\ log' = [log EXCEPT ![s] = newLog]
                  /\ BecomeFollower(s)
                  /\ commitIndex' = [commitIndex EXCEPT ![s] =
                                       Max(commitIndex[s], Min(m.mcommitIndex, index))]
                  /\ Send(reply(TRUE, index))
                  /\ UNCHANGED <<currentTerm, votedFor, ghosts>>

\* LogNext with the buggy follower.
BuggyNext ==
    \/ \E s \in Servers : \/ Timeout(s) /\ NoServerAhead(s)
                          \/ BecomeLeader(s) \/ AdvanceCommitIndex(s)
    \/ \E s \in Servers, v \in Values : ClientRequest(s, v)
    \/ \E s, t \in Servers : \E prev \in 0..Len(log[s]) : SendAppend(s, t, prev, 1)
    \/ \E m \in messages :
         \/ Drop(m)
         \/ \E s \in Servers :
              UpdateTerm(s, m) \/ HandleRVReq(s, m) \/ HandleRVResp(s, m)
              \/ HandleAEReqNoPrevCheck(s, m) \/ HandleAEResp(s, m)

BuggySpec == Init /\ [][BuggyNext]_vars
=============================================================================

------------------------- MODULE RaftLeaderElection -------------------------
(***************************************************************************)
(* Raft's leader election and log replication, written from the Raft paper *)
(* (Ongaro & Ousterhout 2014, Figure 2 and section 5), for the shard       *)
(* replicas that treesync runs on raft-rs.                                 *)
(*                                                                         *)
(* The network loses (Drop), duplicates and reorders messages: messages    *)
(* are a set, and receiving one does not remove it. A server may crash and *)
(* restart at any time (Restart), keeping only its persisted state:        *)
(* currentTerm, votedFor and log (the hard state and entries the WAL       *)
(* fsyncs before any vote or ack is sent).                                 *)
(*                                                                         *)
(* Simplification that only adds behaviours: a leader may send any         *)
(* prefix-consistent AppendEntries (any prevLogIndex, at most one entry,   *)
(* or none) instead of tracking nextIndex, which covers every nextIndex    *)
(* schedule and raft-rs's heartbeats (an empty append at the commit index).*)
(*                                                                         *)
(* Two things keep the state space small and change no behaviour that      *)
(* matters: a server that becomes a follower forgets its votes and         *)
(* matchIndex (as raft-rs's reset does; nothing reads them outside         *)
(* candidacy or leadership), and the network loses responses that no       *)
(* server can act on any more (Stale).                                     *)
(*                                                                         *)
(* Spec has every action (RaftLeaderElectionAllActions.cfg checks it with  *)
(* small bounds). LogSpec, at the end, leaves out restarts, step-downs,    *)
(* heartbeats and competing candidates, so that three terms and two-entry  *)
(* logs fit in the test budget (RaftLeaderElection.cfg).                   *)
(*                                                                         *)
(* Actions ↔ raft-rs: Timeout ~ campaign on election timeout; HandleRVReq  *)
(* / HandleRVResp ~ MsgRequestVote(Response); BecomeLeader ~ become_leader;*)
(* ClientRequest ~ propose; AppendEntries / HandleAEReq / HandleAEResp ~   *)
(* MsgAppend(Response); AdvanceCommitIndex ~ maybe_commit; StepDown ~      *)
(* CheckQuorum or a lost election; Restart ~ a process restart that       *)
(* reloads the WAL. RaftLeaderElectionTrace checks recorded runs of        *)
(* treesync's simulator against this spec.                                *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS Servers, Values, MaxTerm, MaxLogLen, MaxMsgs

Nil == "nil"
Follower == "follower"
Candidate == "candidate"
Leader == "leader"

VARIABLES currentTerm, votedFor, log,               \* persisted
          state, commitIndex, votesGranted, matchIndex, \* volatile
          messages,
          leaders,   \* ghost: <<term, server>> for every election won
          committed  \* ghost: <<index, entry, term in which it was committed>>

persisted == <<currentTerm, votedFor, log>>
volatile == <<state, commitIndex, votesGranted, matchIndex>>
ghosts == <<leaders, committed>>
vars == <<persisted, volatile, messages, ghosts>>

Quorum == {q \in SUBSET Servers : 2 * Cardinality(q) > Cardinality(Servers)}
LastTerm(l) == IF Len(l) = 0 THEN 0 ELSE l[Len(l)].term
Min(a, b) == IF a < b THEN a ELSE b
Max(a, b) == IF a > b THEN a ELSE b

\* A response no server can act on any more: terms only grow and a server is candidate or
\* leader at most once per term, so a response to an older term, a refusal in the current
\* one, or one to a role its receiver has left in that term stays useless forever. The
\* network loses such responses whenever a message is sent (an ordinary loss, and a stale
\* response is not sent at all); this keeps them from filling the MaxMsgs bound and from
\* multiplying states.
Stale(m) ==
    \/ /\ m.mtype = "RVResp"
       /\ \/ m.mterm < currentTerm[m.mdest]
          \/ m.mterm = currentTerm[m.mdest] /\ (~m.mgranted \/ state[m.mdest] # Candidate)
    \/ /\ m.mtype = "AEResp"
       /\ \/ m.mterm < currentTerm[m.mdest]
          \/ m.mterm = currentTerm[m.mdest] /\ (~m.msuccess \/ state[m.mdest] # Leader)

Send(m) == messages' = {x \in messages \cup {m} : ~Stale(x)}

\* Follower in its current term: a candidate's votes and a leader's matchIndex are forgotten.
BecomeFollower(s) ==
    /\ state' = [state EXCEPT ![s] = Follower]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {}]
    /\ matchIndex' = [matchIndex EXCEPT ![s] = [t \in Servers |-> 0]]

Init ==
    /\ currentTerm = [s \in Servers |-> 0]
    /\ votedFor = [s \in Servers |-> Nil]
    /\ log = [s \in Servers |-> <<>>]
    /\ state = [s \in Servers |-> Follower]
    /\ commitIndex = [s \in Servers |-> 0]
    /\ votesGranted = [s \in Servers |-> {}]
    /\ matchIndex = [s \in Servers |-> [t \in Servers |-> 0]]
    /\ messages = {}
    /\ leaders = {}
    /\ committed = {}

-------------------------------------------------------------------------------
\* Crash and restart: volatile state is lost, persisted state and the network remain.
Restart(s) ==
    /\ state' = [state EXCEPT ![s] = Follower]
    /\ commitIndex' = [commitIndex EXCEPT ![s] = 0]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {}]
    /\ matchIndex' = [matchIndex EXCEPT ![s] = [t \in Servers |-> 0]]
    /\ UNCHANGED <<persisted, messages, ghosts>>

\* Election timeout: start an election in the next term (section 5.2).
Timeout(s) ==
    /\ state[s] \in {Follower, Candidate}
    /\ currentTerm[s] < MaxTerm
    /\ currentTerm' = [currentTerm EXCEPT ![s] = currentTerm[s] + 1]
    /\ state' = [state EXCEPT ![s] = Candidate]
    /\ votedFor' = [votedFor EXCEPT ![s] = s]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {s}]
    /\ messages' = {x \in messages : ~Stale(x)} \cup
         {[mtype |-> "RVReq", mterm |-> currentTerm[s] + 1, msource |-> s, mdest |-> t,
           mlastLogTerm |-> LastTerm(log[s]), mlastLogIndex |-> Len(log[s])] : t \in Servers \ {s}}
    /\ UNCHANGED <<log, commitIndex, matchIndex, ghosts>>

\* Any message from a higher term: adopt the term, become a follower (section 5.1).
UpdateTerm(s, m) ==
    /\ m.mdest = s /\ m.mterm > currentTerm[s]
    /\ currentTerm' = [currentTerm EXCEPT ![s] = m.mterm]
    /\ BecomeFollower(s)
    /\ votedFor' = [votedFor EXCEPT ![s] = Nil]
    /\ UNCHANGED <<log, commitIndex, messages, ghosts>>

\* Vote if the term matches, no other vote was cast in it, and the candidate's log is at
\* least as up-to-date (section 5.4.1).
HandleRVReq(s, m) ==
    /\ m.mtype = "RVReq" /\ m.mdest = s /\ m.mterm <= currentTerm[s]
    /\ LET logOk == \/ m.mlastLogTerm > LastTerm(log[s])
                    \/ /\ m.mlastLogTerm = LastTerm(log[s])
                       /\ m.mlastLogIndex >= Len(log[s])
           grant == /\ m.mterm = currentTerm[s]
                    /\ logOk
                    /\ votedFor[s] \in {Nil, m.msource}
       IN /\ votedFor' = [votedFor EXCEPT ![s] = IF grant THEN m.msource ELSE votedFor[s]]
          /\ Send([mtype |-> "RVResp", mterm |-> currentTerm[s], mgranted |-> grant,
                   msource |-> s, mdest |-> m.msource])
    /\ UNCHANGED <<currentTerm, log, volatile, ghosts>>

HandleRVResp(s, m) ==
    /\ m.mtype = "RVResp" /\ m.mdest = s /\ m.mterm = currentTerm[s]
    /\ state[s] = Candidate /\ m.mgranted
    /\ votesGranted' = [votesGranted EXCEPT ![s] = votesGranted[s] \cup {m.msource}]
    /\ UNCHANGED <<persisted, state, commitIndex, matchIndex, messages, ghosts>>

BecomeLeader(s) ==
    /\ state[s] = Candidate /\ votesGranted[s] \in Quorum
    /\ state' = [state EXCEPT ![s] = Leader]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {}]
    /\ matchIndex' = [matchIndex EXCEPT ![s] = [t \in Servers |-> 0]]
    /\ leaders' = leaders \cup {<<currentTerm[s], s>>}
    /\ UNCHANGED <<persisted, commitIndex, messages, committed>>

ClientRequest(s, v) ==
    /\ state[s] = Leader /\ Len(log[s]) < MaxLogLen
    /\ log' = [log EXCEPT ![s] = Append(log[s], [term |-> currentTerm[s], value |-> v])]
    /\ UNCHANGED <<currentTerm, votedFor, volatile, messages, ghosts>>

\* Leader s sends t the entry after the first prev entries of its log, or none (a heartbeat
\* that lets t commit up to prev if their logs match there).
SendAppend(s, t, prev, n) ==
    /\ state[s] = Leader /\ s # t
    /\ prev <= Len(log[s]) /\ n \in 0..1 /\ prev + n <= Len(log[s])
    /\ Send([mtype |-> "AEReq", mterm |-> currentTerm[s], msource |-> s, mdest |-> t,
             mprevLogIndex |-> prev,
             mprevLogTerm |-> IF prev = 0 THEN 0 ELSE log[s][prev].term,
             mentries |-> SubSeq(log[s], prev + 1, prev + n),
             mcommitIndex |-> Min(commitIndex[s], prev + n)])
    /\ UNCHANGED <<persisted, volatile, ghosts>>

AppendEntries(s, t) == \E prev \in 0..Len(log[s]), n \in 0..1 : SendAppend(s, t, prev, n)

\* Follower side of AppendEntries (Figure 2, receiver implementation 1-5).
HandleAEReq(s, m) ==
    /\ m.mtype = "AEReq" /\ m.mdest = s /\ m.mterm <= currentTerm[s]
    /\ LET prev == m.mprevLogIndex
           logOk == prev = 0 \/ (prev <= Len(log[s]) /\ log[s][prev].term = m.mprevLogTerm)
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
                                  THEN log[s]                             \* already there
                                  ELSE Append(SubSeq(log[s], 1, prev), m.mentries[1])
               IN /\ log' = [log EXCEPT ![s] = newLog]
                  /\ BecomeFollower(s)
                  /\ commitIndex' = [commitIndex EXCEPT ![s] =
                                       Max(commitIndex[s], Min(m.mcommitIndex, index))]
                  /\ Send(reply(TRUE, index))
                  /\ UNCHANGED <<currentTerm, votedFor, ghosts>>

HandleAEResp(s, m) ==
    /\ m.mtype = "AEResp" /\ m.mdest = s /\ m.mterm = currentTerm[s]
    /\ state[s] = Leader /\ m.msuccess
    /\ matchIndex' = [matchIndex EXCEPT ![s][m.msource] = Max(@, m.mmatchIndex)]
    /\ UNCHANGED <<persisted, state, commitIndex, votesGranted, messages, ghosts>>

\* A leader commits an entry of its own term once a quorum stores it (section 5.3, 5.4.2).
\* The ghost records each entry with the first term in which it was committed (a later
\* commit of the same entry adds nothing LeaderCompleteness does not already demand).
AdvanceCommitIndex(s) ==
    /\ state[s] = Leader
    /\ \E i \in (commitIndex[s] + 1)..Len(log[s]) :
         /\ log[s][i].term = currentTerm[s]
         /\ {s} \cup {t \in Servers : matchIndex[s][t] >= i} \in Quorum
         /\ commitIndex' = [commitIndex EXCEPT ![s] = i]
         /\ committed' = committed \cup
              {<<j, log[s][j], currentTerm[s]>> :
                 j \in {k \in 1..i : ~\E c \in committed : c[1] = k /\ c[2] = log[s][k]}}
    /\ UNCHANGED <<persisted, state, votesGranted, matchIndex, messages, leaders>>

\* A leader or candidate gives up in its term: CheckQuorum (a leader that has not heard from
\* a quorum for an election timeout) or a lost election in raft-rs.
StepDown(s) ==
    /\ state[s] \in {Candidate, Leader}
    /\ BecomeFollower(s)
    /\ UNCHANGED <<persisted, commitIndex, messages, ghosts>>

Drop(m) ==
    /\ messages' = messages \ {m}
    /\ UNCHANGED <<persisted, volatile, ghosts>>

Next ==
    \/ \E s \in Servers : Restart(s) \/ Timeout(s) \/ BecomeLeader(s) \/ AdvanceCommitIndex(s)
                          \/ StepDown(s)
    \/ \E s \in Servers, v \in Values : ClientRequest(s, v)
    \/ \E s, t \in Servers : AppendEntries(s, t)
    \/ \E m \in messages :
         \/ Drop(m)
         \/ \E s \in Servers :
              UpdateTerm(s, m) \/ HandleRVReq(s, m) \/ HandleRVResp(s, m)
              \/ HandleAEReq(s, m) \/ HandleAEResp(s, m)

Spec == Init /\ [][Next]_vars

\* Keeps the model finite (terms, log length and messages in flight are bounded).
Bounds ==
    /\ \A s \in Servers : currentTerm[s] <= MaxTerm /\ Len(log[s]) <= MaxLogLen
    /\ Cardinality(messages) <= MaxMsgs

Symmetry == Permutations(Servers)

\* The log model. With every action, MaxTerm 3 and MaxLogLen 2 do not finish in the test
\* budget (MaxTerm 2 with MaxLogLen 2 alone is 4 M distinct states). LogNext keeps what log
\* replication needs: elections, client requests, AppendEntries carrying an entry at any
\* prefix (so entries of different leaders and terms meet at the same index), acks,
\* commits, and the lossy, duplicating, reordering network. It leaves out what the full
\* Spec checks at smaller bounds: Restart, StepDown, empty AppendEntries (heartbeats; an
\* entry-carrying one carries the commit index too), and competing candidates -- a server
\* starts an election only into a term no server has reached, so each term has one
\* candidate (split votes decide who leads a term, never what a log holds). Every LogNext
\* step is a Next step, so every behaviour of LogSpec is one of Spec.
NoServerAhead(s) == \A u \in Servers : currentTerm[u] <= currentTerm[s]

LogNext ==
    \/ \E s \in Servers : \/ Timeout(s) /\ NoServerAhead(s)
                          \/ BecomeLeader(s) \/ AdvanceCommitIndex(s)
    \/ \E s \in Servers, v \in Values : ClientRequest(s, v)
    \/ \E s, t \in Servers : \E prev \in 0..Len(log[s]) : SendAppend(s, t, prev, 1)
    \/ \E m \in messages :
         \/ Drop(m)
         \/ \E s \in Servers :
              UpdateTerm(s, m) \/ HandleRVReq(s, m) \/ HandleRVResp(s, m)
              \/ HandleAEReq(s, m) \/ HandleAEResp(s, m)

LogSpec == Init /\ [][LogNext]_vars

-------------------------------------------------------------------------------
\* Properties (Raft paper, Figure 3).

\* At most one leader per term, ever.
ElectionSafety == \A a, b \in leaders : a[1] = b[1] => a[2] = b[2]

\* Same index and term => identical logs up to that index.
LogMatching ==
    \A s, t \in Servers : \A i \in 1..Min(Len(log[s]), Len(log[t])) :
        log[s][i].term = log[t][i].term => SubSeq(log[s], 1, i) = SubSeq(log[t], 1, i)

\* An entry committed in term T is in the log of every leader of a later term.
LeaderCompleteness ==
    \A c \in committed : \A s \in Servers :
        (state[s] = Leader /\ currentTerm[s] > c[3]) =>
            (Len(log[s]) >= c[1] /\ log[s][c[1]] = c[2])

\* No two servers ever apply different entries at the same index.
StateMachineSafety ==
    /\ \A c, d \in committed : c[1] = d[1] => c[2] = d[2]
    /\ \A s, t \in Servers :
         \A i \in 1..Min(Min(commitIndex[s], Len(log[s])), Min(commitIndex[t], Len(log[t]))) :
            log[s][i] = log[t][i]
=============================================================================

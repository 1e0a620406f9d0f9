--------------------------- MODULE ClosedTimestamps ---------------------------
(***************************************************************************)
(* Closed timestamps of one shard (core/src/replica/closed.rs, side.rs):   *)
(* a Raft group of three replicas whose log entries carry, beside their    *)
(* HLC `stamp`, a promise `closed` (nothing at or below it is proposed     *)
(* after the entry) and a `lease` (the most its leaders may promise by     *)
(* side message while it is the greatest applied lease). An idle leader    *)
(* (its whole log applied) closes by side message, no log entry:           *)
(* min(clock - Lag, leaseApplied) for (its term, its last index), which a  *)
(* follower of its term adopts once it applied that index. A new leader    *)
(* stamps above its floor, the greatest lease in its log when its term     *)
(* began, so no side promise of an earlier leader is undercut (each is at  *)
(* most a committed lease, and every committed entry is in its log) -- not *)
(* even one that a deposed leader, which never heard of the new term,      *)
(* keeps making.                                                           *)
(*                                                                         *)
(* The guarantee, NoChangeBelowClosed: once a replica reported closed      *)
(* timestamp c having applied index i, no entry with a stamp at or below c *)
(* is ever applied, by any replica, at an index above i.                   *)
(*                                                                         *)
(* Raft is modelled in atomic steps, coarser than RaftLeaderElection      *)
(* (whose message-level model checks Raft itself). An election is one     *)
(* step: a candidate and one voter (with three replicas, a quorum) enter  *)
(* the new term. An AppendEntries is delivered, acknowledged and, if the   *)
(* leader then may commit, committed in the step that sends it, by a       *)
(* leader that believes it leads (a deposed one too) to a replica in no    *)
(* higher term. A lost or delayed response only means the leader learns    *)
(* of a commit later or never; what a leader knows to be committed only    *)
(* enables what it promises (nothing when not idle, less when it knows     *)
(* fewer leases) and what the log makes it report, which stamps growing    *)
(* along the log (StampsGrow) keep safe on their own; so responses that    *)
(* arrive at once lose nothing NoChangeBelowClosed can see. As raft-rs     *)
(* does, a new leader appends an empty entry at once; it carries no        *)
(* context, so its stamp, closed and lease read as zero (stamp 0 marks it: *)
(* every other entry is stamped at least 1), and it changes nothing. Every *)
(* proposed entry is one change at its stamp: a write, or a renewal        *)
(* (renew_lease's empty entry, stamped like any other; checking it too is  *)
(* only stricter).                                                         *)
(*                                                                         *)
(* A side promise reaches any subset of the leader's peers at once (the    *)
(* other messages are lost): a later delivery, or side.rs's pending        *)
(* promise, adds no report, as PromiseWith explains.                       *)
(*                                                                         *)
(* Clocks are monotonic and independent, with no bound between them (the  *)
(* argument is purely log-based): a replica's clock reads any value from   *)
(* its last reading up to MaxClock (ticks and a reading in one step; only  *)
(* leaders read their clocks, and a restart keeps the clock).              *)
(*                                                                         *)
(* Actions <-> core/src/replica: Propose ~ Replica::propose (a write) and  *)
(* renew_lease (an empty entry), stamped by next_stamp above the floor     *)
(* (SideState::floor), closing by promise() and granting lease(); Promise  *)
(* ~ Replica::side_promise, and the followers' adopt_side_promise (with    *)
(* adopt_pending_side_promise); Elect ~ raft-rs's campaign and             *)
(* become_leader with its empty entry (a replica's `lease_seen` then gives *)
(* the floor); Replicate ~ MsgAppend, its response and maybe_commit;       *)
(* Restart ~ Replica::new over the persisted log, term, vote and commit    *)
(* index (side promises are volatile; max_log_hlc and lease_seen are read  *)
(* back from the log).                                                     *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS Servers,
          MaxTerm, MaxLogLen, MaxClock,   \* bounds
          Lag,   \* how far below its clock a leader closes (closed_lag_ms)
          W      \* how far above its clock an entry's lease is (lease_ms)

Follower == "follower"
Leader == "leader"

VARIABLES currentTerm, log,         \* persisted (a vote is the term: elections are atomic)
          commitIndex,              \* persisted in raft-rs's HardState; applied = committed
          state, side,              \* volatile
          clock,                    \* each replica's clock (its last reading)
          closedBelow               \* ghost: see NoChangeBelowClosed

vars == <<currentTerm, log, commitIndex, state, side, clock, closedBelow>>

Min(a, b) == IF a < b THEN a ELSE b
Max(a, b) == IF a > b THEN a ELSE b
MaxOf(S) == IF S = {} THEN 0 ELSE CHOOSE x \in S : \A y \in S : y <= x
Lagged(now) == IF now >= Lag THEN now - Lag ELSE 0

LastTerm(l) == IF Len(l) = 0 THEN 0 ELSE l[Len(l)].term
\* Log l is at least as up to date as log m (Raft section 5.4.1).
UpToDate(l, m) == \/ LastTerm(l) > LastTerm(m)
                  \/ LastTerm(l) = LastTerm(m) /\ Len(l) >= Len(m)

\* raft-rs's empty entry of a new leader: no context, so stamp, closed and lease read 0.
EmptyEntry(term) == [term |-> term, stamp |-> 0, closed |-> 0, lease |-> 0]
IsChange(e) == e.stamp > 0

MaxStamp(s) == MaxOf({log[s][i].stamp : i \in DOMAIN log[s]})
\* The floor of s's term: the greatest lease in its log when the term began. Its log then
\* held exactly its entries of earlier terms (a leader only appends its own afterwards).
Floor(s) == MaxOf({log[s][i].lease : i \in {j \in DOMAIN log[s] : log[s][j].term < currentTerm[s]}})
\* What s applied: the greatest promise and the greatest lease among applied entries.
AppliedClosed(s) == MaxOf({log[s][i].closed : i \in 1..commitIndex[s]})
LeaseApplied(s) == MaxOf({log[s][i].lease : i \in 1..commitIndex[s]})
\* A replica's closed timestamp (Replica::closed_ts): the log's, or a side promise it made
\* as leader or adopted as follower (side.rs keeps one SideState::closed for both).
ClosedTs(s) == Max(AppliedClosed(s), side[s])

Init ==
    /\ currentTerm = [s \in Servers |-> 0]
    /\ log = [s \in Servers |-> <<>>]
    /\ commitIndex = [s \in Servers |-> 0]
    /\ state = [s \in Servers |-> Follower]
    /\ side = [s \in Servers |-> 0]
    /\ clock = [s \in Servers |-> 0]
    /\ closedBelow = [j \in 1..MaxLogLen |-> 0]

-------------------------------------------------------------------------------
\* Raft (atomic steps).

\* s wins an election in term t with its own vote and v's: both are in earlier terms and
\* s's log is at least as up to date as v's. With three replicas that is a quorum, and
\* any two quorums share a replica, which is in t once t is won: one leader per term. t
\* may be beyond s's next term: s's campaigns in the terms between failed. (An election
\* the third replica votes in too reaches the state this one followed by the new
\* leader's heartbeat to it reaches, so it is left out; so are failed campaigns that win
\* no later term: they only make replicas refuse older terms' messages sooner.) A leader
\* may campaign too: it stepped down (CheckQuorum) and keeps its side promises, or it
\* restarted (restarted: they are lost; see Restart). withEmpty: s appends raft-rs's
\* empty entry (ClosedTimestampsNoEmptyEntryBuggy: not).
ElectWith(s, v, t, withEmpty, restarted) ==
    /\ v # s /\ (restarted => state[s] = Leader /\ side[s] > 0)
    /\ currentTerm[s] < t /\ currentTerm[v] < t /\ UpToDate(log[s], log[v])
    /\ withEmpty => Len(log[s]) < MaxLogLen
    /\ currentTerm' = [currentTerm EXCEPT ![s] = t, ![v] = t]
    /\ state' = [state EXCEPT ![s] = Leader, ![v] = Follower]
    /\ log' = IF withEmpty THEN [log EXCEPT ![s] = Append(@, EmptyEntry(t))] ELSE log
    /\ side' = IF restarted THEN [side EXCEPT ![s] = 0] ELSE side
    /\ UNCHANGED <<commitIndex, clock>>

Elect(s, v, t, restarted) == ElectWith(s, v, t, TRUE, restarted)

\* Leader l sends f its entries up to prev + n (n = 0: a heartbeat) with its commit index;
\* f takes them if its log matches at prev and acknowledges, and l commits up to prev + n
\* if that entry is of its term (raft-rs's maybe_commit on the response: with three
\* replicas, l and f are a quorum). A refused append changes what a heartbeat at prev 0
\* changes (f enters l's term), so only matching ones are modelled. Acknowledgement and
\* commit happen in the step that sends: see the module comment for why a lost or
\* delayed response adds nothing.
Replicate(l, f, prev, n) ==
    /\ state[l] = Leader /\ f # l /\ currentTerm[f] <= currentTerm[l]
    /\ prev + n <= Len(log[l])
    /\ IF prev = 0 THEN TRUE ELSE prev <= Len(log[f]) /\ log[f][prev].term = log[l][prev].term
    /\ LET index == prev + n
           newLog == IF n = 0 THEN log[f]
                     ELSE IF Len(log[f]) >= index /\ log[f][index].term = log[l][index].term
                          THEN log[f]                                   \* already there
                          ELSE Append(SubSeq(log[f], 1, prev), log[l][index])
           commits == index > commitIndex[l] /\ log[l][index].term = currentTerm[l]
       IN /\ log' = [log EXCEPT ![f] = newLog]
          /\ currentTerm' = [currentTerm EXCEPT ![f] = currentTerm[l]]
          /\ state' = [state EXCEPT ![f] = Follower]
          /\ commitIndex' = [commitIndex EXCEPT ![f] = Max(@, Min(commitIndex[l], index)),
                                                ![l] = IF commits THEN index ELSE @]
    /\ UNCHANGED <<side, clock>>

\* A crash and restart: the log, term (and vote) and commit index survive, side promises
\* (made or adopted) do not; the closed timestamp falls back to the applied log's. Only a
\* follower's restart is a step: a restarted leader is a follower of its term, which acts
\* as that leader does if it never acts again (it may vote, and take a later term's
\* entries, as a leader may; it adopts no promise, as only it could have made one in its
\* term), but for its lost side promises, which matter only to what it stamps above if it
\* leads again: Elect's `restarted` drops them then. This keeps out a copy of every state
\* with a former leader (a factor of 2.8 at MaxTerm 2, MaxLogLen 4).
Restart(s) ==
    /\ state[s] = Follower /\ side[s] > 0
    /\ side' = [side EXCEPT ![s] = 0]
    /\ UNCHANGED <<currentTerm, log, commitIndex, state, clock>>

-------------------------------------------------------------------------------
\* Closed timestamps.

\* What s's clock may read now: its last reading or more (it ticked in between).
Readings(s) == clock[s]..MaxClock

\* Leader s proposes an entry when its clock reads now (next_stamp, promise, lease): stamped
\* above every stamp in its log, every side promise and floor; closing max(now - Lag, side
\* promises, floor) but below itself; granting lease now + W. floor is Floor(s)
\* (ClosedTimestampsNoFloorBuggy: 0).
ProposeWith(s, now, floor) ==
    /\ state[s] = Leader /\ Len(log[s]) < MaxLogLen
    /\ LET stamp == Max(now, Max(Max(MaxStamp(s), side[s]), floor) + 1)
           closed == Min(Max(Max(Lagged(now), side[s]), floor), stamp - 1)
       IN log' = [log EXCEPT ![s] = Append(@, [term |-> currentTerm[s], stamp |-> stamp,
                                                closed |-> closed, lease |-> now + W])]
    /\ clock' = [clock EXCEPT ![s] = now]
    /\ UNCHANGED <<currentTerm, commitIndex, state, side>>

Propose(s, now) == ProposeWith(s, now, Floor(s))

\* Leader s (it believes so: a deposed leader that has not heard of the new term does too)
\* promises closed c by side message for (its term, its last index). idle: only with its
\* whole log applied (side_promise's `applied >= last`; ClosedTimestampsBusyPromiseBuggy:
\* at any time). It promises only what closes more than it knew, and never stamps at or
\* below it afterwards (next_stamp reads side). The promise reaches some of its peers (the
\* other messages are lost); a peer adopts it if it is a follower in s's term that applied
\* up to the promise's index (adopt_side_promise; checkApplied FALSE, in
\* ClosedTimestampsEarlyAdoptBuggy: without the last condition), and drops it otherwise.
\* Delivery is immediate: a follower that would adopt the promise later (side.rs's pending
\* promise, or a delayed message) adopts it having applied at least the promise's index,
\* and s itself reported c at that index when it promised (it is idle), so a later
\* adoption adds no report the ghost does not already hold; it only raises what that
\* follower stamps above if it leads later.
Adopters(s, c, checkApplied) ==
    {t \in Servers \ {s} : /\ state[t] # Leader /\ currentTerm[t] = currentTerm[s]
                           /\ checkApplied => commitIndex[t] >= Len(log[s])
                           /\ side[t] < c}                 \* else adopting changes nothing
PromiseWith(s, now, c, idle, checkApplied) ==
    /\ state[s] = Leader
    /\ idle => commitIndex[s] = Len(log[s])
    /\ c > ClosedTs(s)
    /\ \E adopters \in SUBSET Adopters(s, c, checkApplied) :
         side' = [t \in Servers |-> IF t = s \/ t \in adopters THEN c ELSE side[t]]
    /\ clock' = [clock EXCEPT ![s] = now]
    /\ UNCHANGED <<currentTerm, log, commitIndex, state>>

\* The promise side_promise makes when s's clock reads now: min(now - Lag, leaseApplied).
Promise(s, now) == PromiseWith(s, now, Min(Lagged(now), LeaseApplied(s)), TRUE, TRUE)

-------------------------------------------------------------------------------
\* The ghost: closedBelow[j] is the greatest closed timestamp any replica reported while it
\* had applied fewer than j entries (so no change may ever be applied at index j at or
\* below it). Every step records what the replicas report after it; a replica whose applied
\* index and side promise the step left alone reports what it reported before (applied
\* entries never change).
Record ==
    LET moved == {s \in Servers : commitIndex'[s] # commitIndex[s] \/ side'[s] # side[s]}
        reported == [s \in moved |-> ClosedTs(s)']
    IN closedBelow' =
         IF moved = {} THEN closedBelow
         ELSE [j \in 1..MaxLogLen |->
                 MaxOf({closedBelow[j]} \cup {reported[s] : s \in {u \in moved : commitIndex'[u] < j}})]


RaftNext ==
    \/ \E l, f \in Servers, prev \in 0..MaxLogLen, n \in 0..1 : Replicate(l, f, prev, n)
    \/ \E s \in Servers : Restart(s)

Elections == \E s, v \in Servers, t \in 1..MaxTerm, restarted \in BOOLEAN :
                 Elect(s, v, t, restarted)
Proposals == \E s \in Servers : \E now \in Readings(s) : Propose(s, now)
Promises == \E s \in Servers : \E now \in Readings(s) : Promise(s, now)

Next == RaftNext \/ Elections \/ Proposals \/ Promises

Spec == Init /\ [][Next /\ Record]_vars

Symmetry == Permutations(Servers)

-------------------------------------------------------------------------------
\* Properties.

\* The guarantee: no change is applied at an index above the applied index at which some
\* replica reported a closed timestamp at or above its stamp.
NoChangeBelowClosed ==
    \A s \in Servers : \A j \in 1..commitIndex[s] :
        IsChange(log[s][j]) => log[s][j].stamp > closedBelow[j]

\* What the argument rests on: stamps grow along every log (HLCs grow along the log), and
\* an entry's promise is below its own stamp.
StampsGrow ==
    \A s \in Servers : \A i, j \in DOMAIN log[s] :
        i < j /\ IsChange(log[s][j]) => log[s][i].stamp < log[s][j].stamp
ClosedBelowStamp ==
    \A s \in Servers : \A i \in DOMAIN log[s] :
        IsChange(log[s][i]) => log[s][i].closed < log[s][i].stamp

\* Raft's (Figure 3), as far as this model's state shows them.
ElectionSafety ==
    \A s, t \in Servers :
        state[s] = Leader /\ state[t] = Leader /\ currentTerm[s] = currentTerm[t] => s = t
LogMatching ==
    \A s, t \in Servers : \A i \in 1..Min(Len(log[s]), Len(log[t])) :
        log[s][i].term = log[t][i].term => \A k \in 1..i : log[s][k] = log[t][k]
\* An entry t applied was committed in a term no later than t's: a leader of a later term
\* holds it (every leader's log holds every entry committed before its term).
LeaderCompleteness ==
    \A s, t \in Servers :
        state[s] = Leader /\ currentTerm[s] > currentTerm[t] =>
            /\ Len(log[s]) >= commitIndex[t]
            /\ SubSeq(log[s], 1, commitIndex[t]) = SubSeq(log[t], 1, commitIndex[t])
StateMachineSafety ==
    \A s, t \in Servers : \A i \in 1..Min(commitIndex[s], commitIndex[t]) : log[s][i] = log[t][i]
=============================================================================

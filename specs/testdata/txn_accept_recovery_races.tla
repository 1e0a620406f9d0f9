---- MODULE TxnTrace ----
\* expect: accepted
\* t1 pauses after its writes (implicitly committed) and is pushed: recovery starts, finds
\* k1; meanwhile t1's coordinator answers the client and commits; recovery finds k2 and
\* "decides" COMMITTED (the record already says so); a second pusher sees it committed.
\* t2 crashes before any record (its intent to k4 still in flight): a pusher that met its
\* intent on k3 aborts it (a tombstone), a second one sees ABORTED, k3 is resolved; t2's
\* intent then lands on k4 (nothing prevented it there) and is met, pushed and dropped too.
\* t3's intent to k1 is refused as too old (t1 committed k1 at a higher timestamp): t3 aborts
\* itself, and its intent on k5, sent with the other, lands late and is dropped.
TraceTxns == {"t1", "t2", "t3"}
TraceKeys == {"k1", "k2", "k3", "k4", "k5"}
TraceWrites == [t \in TraceTxns |-> CASE t = "t1" -> {"k1", "k2"} [] t = "t2" -> {"k3", "k4"}
                                     [] OTHER -> {"k1", "k5"}]
TraceTS == [t \in TraceTxns |-> CASE t = "t1" -> 2 [] t = "t2" -> 3 [] OTHER -> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "WriteIntent", t |-> "t2", k |-> "k3", result |-> "none"],
  [kind |-> "Crash", t |-> "t2", k |-> "none", result |-> "none"],
  [kind |-> "RecoverStart", t |-> "t1", k |-> "none", result |-> "staging"],
  [kind |-> "RecoverCheck", t |-> "t1", k |-> "k1", result |-> "found"],
  [kind |-> "Ack", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "MakeExplicit", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "RecoverStart", t |-> "t2", k |-> "none", result |-> "aborted"],
  [kind |-> "RecoverCheck", t |-> "t1", k |-> "k2", result |-> "found"],
  [kind |-> "RecoverCheck", t |-> "t1", k |-> "k1", result |-> "found"],
  [kind |-> "RecoverDecide", t |-> "t1", k |-> "none", result |-> "committed"],
  [kind |-> "RecoverStart", t |-> "t2", k |-> "none", result |-> "aborted"],
  [kind |-> "RecoverStart", t |-> "t1", k |-> "none", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t2", k |-> "k3", result |-> "aborted"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"],
  [kind |-> "RecoverDecide", t |-> "t1", k |-> "none", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k2", result |-> "committed"],
  [kind |-> "WriteIntent", t |-> "t2", k |-> "k4", result |-> "none"],
  [kind |-> "WriteRefused", t |-> "t3", k |-> "k1", result |-> "tooold"],
  [kind |-> "WriteIntent", t |-> "t3", k |-> "k5", result |-> "none"],
  [kind |-> "AbortSelf", t |-> "t3", k |-> "none", result |-> "none"],
  [kind |-> "RecoverStart", t |-> "t2", k |-> "none", result |-> "aborted"],
  [kind |-> "Resolve", t |-> "t2", k |-> "k4", result |-> "aborted"],
  [kind |-> "Resolve", t |-> "t3", k |-> "k5", result |-> "aborted"]
>>
====

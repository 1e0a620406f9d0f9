---- MODULE TxnTrace ----
\* expect: accepted
\* The fix: the same refusal of a resent copy, but the coordinator asks k2 first
\* (QueryIntent): the first copy is there, so it commits.
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteRefused", t |-> "t1", k |-> "k2", result |-> "rejected"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "QueryIntent", t |-> "t1", k |-> "k2", result |-> "found"],
  [kind |-> "Ack", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "MakeExplicit", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k2", result |-> "committed"]
>>
====

---- MODULE TxnTrace ----
\* expect: rejected at 4
\* A QueryIntent that prevented t1's intent on k2: no copy of it may land there afterwards.
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteRefused", t |-> "t1", k |-> "k2", result |-> "rejected"],
  [kind |-> "QueryIntent", t |-> "t1", k |-> "k2", result |-> "prevented"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"]
>>
====

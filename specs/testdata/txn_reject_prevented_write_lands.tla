---- MODULE TxnTrace ----
\* expect: rejected at 7
\* Recovery prevents t1's missing write to k2, yet k2 then takes t1's intent (event 7: a
\* shard that forgot what recovery prevented).
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Crash", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "RecoverStart", t |-> "t1", k |-> "none", result |-> "staging"],
  [kind |-> "RecoverCheck", t |-> "t1", k |-> "k1", result |-> "found"],
  [kind |-> "RecoverCheck", t |-> "t1", k |-> "k2", result |-> "prevented"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"],
  [kind |-> "RecoverDecide", t |-> "t1", k |-> "none", result |-> "aborted"]
>>
====

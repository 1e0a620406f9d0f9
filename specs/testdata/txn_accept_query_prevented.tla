---- MODULE TxnTrace ----
\* expect: accepted
\* The fix: the refusal of a resent copy, k2 asked, no intent there: k2 prevents it, the
\* coordinator fails and aborts (with the record STAGING and k1's intent written).
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "WriteRefused", t |-> "t1", k |-> "k2", result |-> "rejected"],
  [kind |-> "QueryIntent", t |-> "t1", k |-> "k2", result |-> "prevented"],
  [kind |-> "AbortSelf", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "aborted"]
>>
====

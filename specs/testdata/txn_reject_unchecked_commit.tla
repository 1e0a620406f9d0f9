---- MODULE TxnTrace ----
\* expect: rejected at 5
\* Recovery commits t1 straight from its STAGING record without checking the listed writes
\* (event 5; the injected bug "recovery-skips-checks"): t1's intent on k2 never landed.
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Crash", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "RecoverStart", t |-> "t1", k |-> "none", result |-> "staging"],
  [kind |-> "RecoverDecide", t |-> "t1", k |-> "none", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"]
>>
====

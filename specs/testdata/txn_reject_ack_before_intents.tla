---- MODULE TxnTrace ----
\* expect: rejected at 3
\* The client is told t1 committed (event 3) when its STAGING record is written but its
\* intent on k2 is not yet (the injected bug "ack-without-intents" would do this).
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Ack", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"],
  [kind |-> "MakeExplicit", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k2", result |-> "committed"]
>>
====

---- MODULE TxnTrace ----
\* expect: accepted
\* Wait-die. t1 (older) writes k1 and k3, t2 writes k1 and k2. t2's intent to k1 meets t1's
\* and t2 dies (a hidden Die(t2): no WriteRefused); its STAGING record, sent at the start,
\* lands only after t1 committed and resolved k1 (so after Die: LateWriteStaging), then t2
\* aborts itself and its intent on k2 is dropped.
TraceTxns == {"t1", "t2"}
TraceKeys == {"k1", "k2", "k3"}
TraceWrites == [t \in TraceTxns |-> CASE t = "t1" -> {"k1", "k3"} [] OTHER -> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> CASE t = "t1" -> 1 [] OTHER -> 2]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k3", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "WriteIntent", t |-> "t2", k |-> "k2", result |-> "none"],
  [kind |-> "Ack", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "MakeExplicit", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k3", result |-> "committed"],
  [kind |-> "WriteStaging", t |-> "t2", k |-> "none", result |-> "none"],
  [kind |-> "AbortSelf", t |-> "t2", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t2", k |-> "k2", result |-> "aborted"]
>>
====

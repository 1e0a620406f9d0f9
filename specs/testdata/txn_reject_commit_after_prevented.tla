---- MODULE TxnTrace ----
\* expect: rejected at 10
\* txn_accept_crash_recovered with one event changed: recovery decides COMMITTED although
\* its RecoverCheck of k2 said prevented (event 10, RecoverDecide, must be refused).
TraceTxns == {"t1", "t2"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> CASE t = "t1" -> 1 [] OTHER -> 2]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t2", k |-> "k1", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t2", k |-> "none", result |-> "none"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"],
  [kind |-> "Crash", t |-> "t2", k |-> "none", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "RecoverStart", t |-> "t2", k |-> "none", result |-> "alive"],
  [kind |-> "RecoverStart", t |-> "t2", k |-> "none", result |-> "staging"],
  [kind |-> "RecoverCheck", t |-> "t2", k |-> "k1", result |-> "found"],
  [kind |-> "RecoverCheck", t |-> "t2", k |-> "k2", result |-> "prevented"],
  [kind |-> "RecoverDecide", t |-> "t2", k |-> "none", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t2", k |-> "k1", result |-> "aborted"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "Ack", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "MakeExplicit", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k2", result |-> "committed"],
  [kind |-> "WriteRefused", t |-> "t2", k |-> "k2", result |-> "closed"]
>>
====

---- MODULE TxnTrace ----
\* expect: accepted
\* t1 (older) and t2 both write k1 and k2. t2 takes k1 and stages, t1 takes k2; t2's
\* coordinator crashes. t1 waits on t2's intent on k1 and pushes it: first too early (alive),
\* then recovery finds k1, prevents k2 (t1 holds it) and aborts t2. t1 then takes k1 and
\* commits; t2's intent to k2, still in flight from before the crash, is refused: prevented.
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
  [kind |-> "RecoverDecide", t |-> "t2", k |-> "none", result |-> "aborted"],
  [kind |-> "Resolve", t |-> "t2", k |-> "k1", result |-> "aborted"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "Ack", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "MakeExplicit", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k1", result |-> "committed"],
  [kind |-> "Resolve", t |-> "t1", k |-> "k2", result |-> "committed"],
  [kind |-> "WriteRefused", t |-> "t2", k |-> "k2", result |-> "closed"]
>>
====

---- MODULE TxnTrace ----
\* expect: violates ImplicitCommitIsFinal at 5
\* The defect seeds 22 and 27 showed (2026-12-02): t1's first copy of its k2 intent was lost,
\* a resent copy was refused (below k2's closed timestamp, before the first copy applied),
\* the coordinator took that refusal as final and aborted, but the first copy landed and so
\* did the STAGING record: every write of t1 was there, it was implicitly committed, and
\* its own coordinator aborted it. (The abort is the last event on purpose: the trace
\* spec's final step makes TLC check the property on it before accepting.)
TraceTxns == {"t1"}
TraceKeys == {"k1", "k2"}
TraceWrites == [t \in TraceTxns |-> {"k1", "k2"}]
TraceTS == [t \in TraceTxns |-> 1]
TraceEvents == <<
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k1", result |-> "none"],
  [kind |-> "WriteRefused", t |-> "t1", k |-> "k2", result |-> "rejected"],
  [kind |-> "WriteIntent", t |-> "t1", k |-> "k2", result |-> "none"],
  [kind |-> "WriteStaging", t |-> "t1", k |-> "none", result |-> "none"],
  [kind |-> "AbortSelf", t |-> "t1", k |-> "none", result |-> "none"]
>>
====

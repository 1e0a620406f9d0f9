#!/usr/bin/env python3
"""Trace validation: recorded simulator runs checked by TLC against RaftLeaderElection.

For the seeds chosen below, `treesync sim --seed S --steps 300 --trace RaftTrace.tla` records the
run's Raft steps as spec actions (sim/src/trace.rs); TLC then checks
RaftLeaderElectionTrace.tla, which accepts the trace iff some behaviour of the protocol
spec matches every event (its invariant TraceNotMatched is then violated). Clean runs must
be accepted; a run with `--inject forget-vote` (a restart loses the persisted vote) must be
rejected, and the first event the spec does not allow is printed.

Usage: python3 specs/trace.py [--treesync PATH]   (default: cargo run --bin treesync)
Ends with `traces: N passed, F failed`; exit status 1 on any failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from check import HERE, check_java, tla2tools_jar

# The clean traces validated: the VALIDATED seeds of 1..SCANNED with the most elections and
# restarts (recording is fast; TLC is what takes time), so the choice survives code changes
# that move the simulator's random choices.
SCANNED = 30
VALIDATED = 4
STEPS = 300
TIMEOUT_S = 10 * 60


def treesync_command(argv):
    if "--treesync" in argv:
        return [argv[argv.index("--treesync") + 1]]
    return ["cargo", "run", "--quiet", "--bin", "treesync", "--"]


def record(treesync, seed, workdir, inject=None):
    """Runs one seed in trace mode; returns (sim output, the trace's event lines)."""
    cmd = treesync + ["sim", "--seed", str(seed), "--steps", str(STEPS),
                      "--trace", os.path.join(workdir, "RaftTrace.tla")]
    if inject:
        cmd += ["--inject", inject]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"recording seed {seed} failed:\n{proc.stdout}{proc.stderr}")
    with open(os.path.join(workdir, "RaftTrace.tla"), encoding="utf-8") as f:
        events = [line.strip().rstrip(",") for line in f if line.lstrip().startswith("[kind")]
    return proc.stdout, events


def validate(jar, workdir):
    """Runs TLC on the trace in workdir; returns (accepted, events matched, seconds)."""
    cmd = ["java", "-XX:+UseParallelGC", "-cp", jar, "tlc2.TLC", "-workers", "2", "-deadlock",
           "-metadir", os.path.join(workdir, "states"),
           "-config", "RaftLeaderElectionTrace.cfg", "RaftLeaderElectionTrace"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    seconds = time.monotonic() - started
    depth = re.findall(r"depth of the complete state graph search is (\d+)", output)
    matched = int(depth[-1]) - 1 if depth else -1
    if "Invariant TraceNotMatched is violated" in output:
        return True, matched, seconds, None
    broken = re.search(r"Error: Invariant (\w+) is violated", output)
    if broken:
        return False, matched, seconds, f"the trace violates {broken.group(1)}"
    if "Model checking completed. No error has been found." in output:
        return False, matched, seconds, None
    return False, matched, seconds, "TLC did not finish:\n" + "\n".join(output.splitlines()[-20:])


def main():
    check_java()
    jar = tla2tools_jar()
    treesync = treesync_command(sys.argv)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="treesync-trace-") as workdir:
        for name in ("RaftLeaderElection.tla", "RaftLeaderElectionTrace.tla",
                     "RaftLeaderElectionTrace.cfg"):
            shutil.copy(os.path.join(HERE, name), workdir)

        busiest = []
        for seed in range(1, SCANNED + 1):
            _, events = record(treesync, seed, workdir)
            score = sum(('"BecomeLeader"' in e) + ('"Restart"' in e) for e in events)
            busiest.append((score, -seed))
        chosen = sorted(-s for _, s in sorted(busiest, reverse=True)[:VALIDATED])
        print(f"  validating seeds {chosen} (most elections and restarts of 1..{SCANNED})",
              flush=True)
        for seed in chosen:
            _, events = record(treesync, seed, workdir)
            accepted, matched, seconds, problem = validate(jar, workdir)
            elections = sum('"BecomeLeader"' in e for e in events)
            restarts = sum('"Restart"' in e for e in events)
            if accepted:
                passed += 1
                print(f"  ok   seed {seed}: accepted, all {len(events)} events matched "
                      f"({elections} elections, {restarts} restarts), {seconds:.0f} s", flush=True)
            else:
                failed += 1
                where = events[matched] if 0 <= matched < len(events) else "?"
                print(f"  FAIL seed {seed}: rejected after {matched} of {len(events)} events"
                      f"{'; ' + problem if problem else ''}\n       first unmatched: {where}",
                      flush=True)

        # The bug trace: the first seed in which a restart actually lost a vote.
        for seed in range(1, 50):
            out, events = record(treesync, seed, workdir, inject="forget-vote")
            lost = re.search(r"\((\d+) lost their vote\)", out)
            if lost and int(lost.group(1)) > 0:
                break
        else:
            sys.exit("no seed below 50 restarted a node that had voted")
        accepted, matched, seconds, problem = validate(jar, workdir)
        if not accepted and problem is None and 0 <= matched < len(events):
            passed += 1
            print(f"  ok   seed {seed} --inject forget-vote: rejected as it must be, after "
                  f"{matched} of {len(events)} events, {seconds:.0f} s\n"
                  f"       first unmatched: {events[matched]}", flush=True)
        else:
            failed += 1
            print(f"  FAIL seed {seed} --inject forget-vote: expected a rejection, got "
                  f"accepted={accepted} matched={matched} {problem or ''}", flush=True)
    print(f"traces: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

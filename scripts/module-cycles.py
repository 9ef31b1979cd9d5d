#!/usr/bin/env python3
"""Module-level import cycles of the crate, from `cargo modules dependencies` (DOT on stdin).

cargo-modules' own `--acyclic` checks the item graph (a type and its own `Default` impl
already form a loop there); this folds every item into the module that declares it and
reports each set of modules that import one another in a loop. A parent module counts
as a module of its own: a child that uses its parent's items while the parent uses the
child's is a loop too. Exit 1 with the loops printed, 0 when there are none.
"""
import re
import sys
from collections import defaultdict

NODE = re.compile(r'^\s*"([^"]+)" \[label="[^"]*".*// "(\w+)" node')
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="uses"')


def main():
    modules, edges = set(), []
    for line in sys.stdin:
        if m := NODE.match(line):
            if m.group(2) in ("mod", "crate"):
                modules.add(m.group(1))
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
    if not modules:
        print("module-cycles: no modules in the input (is it cargo-modules' DOT?)", file=sys.stderr)
        return 2

    def module_of(path):
        while path not in modules and "::" in path:
            path = path.rsplit("::", 1)[0]
        return path

    graph, why = defaultdict(set), {}
    for a, b in edges:
        ma, mb = module_of(a), module_of(b)
        if ma != mb and mb in modules:
            graph[ma].add(mb)
            why.setdefault((ma, mb), f"{a} uses {b}")
    loops = strongly_connected(modules, graph)
    for scc in loops:
        print("loop between: " + ", ".join(sorted(scc)))
        for a in sorted(scc):
            for b in sorted(graph[a] & scc):
                print(f"    {why[(a, b)]}")
    print(f"module-cycles: {len(modules)} modules, {sum(len(v) for v in graph.values())} "
          f"module imports, {len(loops)} loop(s)")
    return 1 if loops else 0


def strongly_connected(nodes, graph):
    """Tarjan's algorithm, iterative; components of more than one module."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    scc = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        scc.add(w)
                        if w == v:
                            break
                    if len(scc) > 1:
                        out.append(scc)
    return out


def self_test():
    """The check fails on a loop (and names its imports) and passes without one."""
    import io
    import contextlib

    def dot(edges):
        nodes = "".join(f'    "{m}" [label="pub mod|{m}"]; // "mod" node\n' for m in ("c", "c::a", "c::b"))
        nodes += '    "c::a::f" [label="fn|a::f"]; // "fn" node\n'
        uses = "".join(f'    "{a}" -> "{b}" [label="uses"]; // "uses" edge\n' for a, b in edges)
        return nodes + uses

    for edges, want in [([("c::a::f", "c::b"), ("c::b", "c::a")], 1), ([("c::a::f", "c::b")], 0)]:
        sys.stdin = io.StringIO(dot(edges))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            got = main()
        assert got == want, (edges, got, out.getvalue())
        assert (want == 0) or "c::a::f uses c::b" in out.getvalue(), out.getvalue()
    print("module-cycles: self-test passed")
    return 0


if __name__ == "__main__":
    sys.exit(self_test() if sys.argv[1:] == ["--self-test"] else main())

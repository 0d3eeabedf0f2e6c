#!/usr/bin/env python3
"""Reports import cycles between the modules (files) of a crate: `scripts/module-cycles.py src`.

An edge A -> B means file A names `crate::b...` (or `super::`/`self::` resolving to B) in
code. A module declaring its children (`mod x;`) is not an edge, a `pub use` of a child is.
Exit 1 when a cycle exists. The invariant is stated in ARCHITECTURE.md.
"""
import os, re, sys

def modules(root):
    mods = {}
    for dp, _, fs in os.walk(root):
        for f in fs:
            if not f.endswith('.rs'):
                continue
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ('lib', 'main', 'mod'):
                parts = parts[:-1]
            if parts and parts[0] == 'bin':
                continue
            mods[tuple(parts)] = p
    return mods

def resolve(mods, path):
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None

def strip(text):
    text = re.sub(r'//[^\n]*', '', text)
    # Unit tests (an inline `#[cfg(test)] mod tests {` at the end of a file, or a `tests.rs`)
    # may use anything: they are not part of the module graph.
    cut = re.search(r'#\[cfg\(test\)\]\s*mod tests\s*\{', text)
    return text[:cut.start()] if cut else text

def main(root):
    mods = modules(root)
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = strip(open(p).read())
        for path in re.findall(r'\bcrate((?:::\w+)+)', text):
            t = resolve(mods, path.strip(':').split('::'))
            if t and t != m and not (len(t) > len(m) and t[:len(m)] == m and False):
                if t[:len(m)] == m and len(t) == len(m) + 1:
                    continue  # own child
                if t == m[:len(t)]:
                    continue  # an ancestor re-exported path into ourselves
                edges[m].add(t)
        for path in re.findall(r'\bsuper((?:::\w+)+)', text):
            base = list(m[:-1])
            t = resolve(mods, base + path.strip(':').split('::'))
            if t and t != m and t != tuple(base):
                edges[m].add(t)
            elif t == tuple(base) and t != m:
                edges[m].add(t)
    # tests modules depend on their parent by design (`use super::*`): ignore edges from tests
    for m in list(edges):
        if m and m[-1] == 'tests':
            edges[m] = set()
    # Tarjan SCC
    index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1:
                sccs.append(comp)
    for v in edges:
        if v not in index:
            strong(v)
    for c in sccs:
        print('cycle:', ' <-> '.join('::'.join(x) or 'crate' for x in sorted(c)))
    return 1 if sccs else 0

if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else 'src'))

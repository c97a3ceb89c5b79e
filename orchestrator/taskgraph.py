"""Dependency-graph checks for the backlog: unknown ids, self-dependencies, cycles.

Kept apart from the event plumbing in ``orchestrator.backlog`` because the same checks
run on a whole import *before* anything is appended (the graph is the existing backlog
merged with the incoming tasks), and because a cycle must be reported as the actual
loop (``a -> b -> c -> a``), not as "some task is never ready".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def find_cycle(graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]``, or None. Deterministic (sorted walk).

    Iterative DFS with three colours, so a deep chain of a few thousand tasks cannot hit
    Python's recursion limit. Edges to ids missing from ``graph`` are ignored here
    (``unknown_dependencies`` reports them).
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    for root in sorted(graph):
        if colour[root] != white:
            continue
        path: list[str] = [root]
        iters = [iter(sorted(graph[root]))]
        colour[root] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            state = colour.get(nxt)
            if state is None or state == black:
                continue
            if state == grey:
                return [*path[path.index(nxt):], nxt]
            colour[nxt] = grey
            path.append(nxt)
            iters.append(iter(sorted(graph[nxt])))
    return None


def unknown_dependencies(graph: Mapping[str, Sequence[str]],
                         only: Iterable[str]) -> list[tuple[str, str]]:
    """``(task, missing_dependency)`` for the tasks in ``only`` (the incoming ones)."""
    out: list[tuple[str, str]] = []
    for task in only:
        for dep in graph.get(task, ()):
            if dep not in graph:
                out.append((task, dep))
    return out


def topological(ids: Sequence[str], graph: Mapping[str, Sequence[str]]) -> list[str]:
    """``ids`` reordered so each comes after its dependencies among ``ids``; otherwise the
    given order is kept (stable), so an import appends in file order whenever it can.

    Assumes no cycle (checked first). Appending dependencies first means a reader of the
    log never sees a task whose dependency does not exist yet.
    """
    wanted = set(ids)
    placed: set[str] = set()
    out: list[str] = []

    def place(task: str, trail: tuple[str, ...] = ()) -> None:
        if task in placed or task in trail:
            return
        for dep in graph.get(task, ()):
            if dep in wanted:
                place(dep, (*trail, task))
        placed.add(task)
        out.append(task)

    for task in ids:
        place(task)
    return out

"""The collection pipeline declared once, as a graph of stages built from their reads and writes.

Per source the chain is ``download -> shots`` (items: :class:`talkset.items.Source`); per shot it
is a graph over :class:`talkset.items.Clip` items. A clip stage needs the latest stage before it
(in :data:`CLIP_ORDER`) that writes a field it reads (``reads`` and ``optional_reads`` of
:mod:`talkset.stages.base`; ``"source.*"`` fields come from the source chain), and every stage
after the gate (people) needs the gate. Drawn without its transitive edges, with annotation on::

    people -> clip -> faces -> speaking -> align -> write
                 \\-> pose ----------------/

people needs the shot; clip needs people (the kept shot); pose needs the clip and the person
tracks; faces needs the clip; speaking needs faces (and the clip's audio); align needs pose and
speaking; write needs align. ``people`` is the gate: a shot it rejects goes no further.

The collect flow (:mod:`talkset.flows.collect`), the naive baseline and the benchmark
(``benchmarks/throughput.py``) all read this one declaration: :func:`clip_graph` for the
dependencies, :func:`run_clip` to execute a clip's stages, each as soon as its inputs are done
(pose runs alongside faces -> speaking), or one after another in topological order
(``parallel=False``, the sequential baseline). Branch outputs are merged field by field: each
stage's declared ``writes`` (plus its ``models`` entries) are taken from its own output, so the
result equals a sequential run's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from talkset.stages.base import StageError

#: stages run on the source item, one after another
SOURCE_ORDER: tuple[str, ...] = ("download", "shots")
#: clip stages in the order a sequential run takes them (the graph's tie-break)
CLIP_ORDER: tuple[str, ...] = ("people", "clip", "pose", "faces", "speaking", "align", "write")
#: the stage whose ``shot.kept`` decides whether the rest runs
GATE = "people"


@dataclass(frozen=True)
class Graph:
    """``order``: clip stage names, topologically sorted; ``needs``: name -> the stages whose
    writes it reads (its data dependencies, in ``order``); ``writes``: name -> the fields that stage sets on the clip."""

    order: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]
    writes: Mapping[str, tuple[str, ...]]

    def roots(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if not self.needs[n])

    def ancestors(self, name: str) -> set[str]:
        out: set[str] = set()
        todo = list(self.needs[name])
        while todo:
            n = todo.pop()
            if n not in out:
                out.add(n)
                todo.extend(self.needs[n])
        return out

    def independent(self, a: str, b: str) -> bool:
        """True when neither stage needs the other (they may run at the same time)."""
        return a != b and a not in self.ancestors(b) and b not in self.ancestors(a)

    def describe(self) -> str:
        return "; ".join(f"{n} <- {', '.join(self.needs[n]) or '(shot)'}" for n in self.order)


def clip_graph(stages: Mapping[str, Any]) -> Graph:
    """The dependency graph of the clip stages present in ``stages`` (name -> stage instance),
    from their ``reads`` / ``optional_reads`` / ``writes`` declarations.

    Raises ``ValueError`` for a stage name not in :data:`CLIP_ORDER` / :data:`SOURCE_ORDER` or a
    read no earlier clip stage writes (other than the shot, the source and ``clip_fps``, set when
    the clip item is made)."""
    unknown = [n for n in stages if n not in CLIP_ORDER and n not in SOURCE_ORDER]
    if unknown:
        raise ValueError(f"stages {unknown} are not in the pipeline declaration {CLIP_ORDER}")
    order = tuple(n for n in CLIP_ORDER if n in stages)
    given = {"shot", "clip_fps", "source", "clip_id"}
    direct: dict[str, set[str]] = {}
    writes: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(order):
        st = stages[name]
        deps: set[str] = set()
        for field_name in (*st.reads, *st.optional_reads):
            top = field_name.split(".", 1)[0]
            if top == "source":
                continue
            writer = next((p for p in reversed(order[:i]) if top in stages[p].writes), None)
            if writer is not None:
                deps.add(writer)
            elif top not in given and field_name in st.reads:
                raise ValueError(f"stage {name} reads {field_name}, which no earlier stage of {order} writes")
        if name == "write":  # commits the clip: after every other stage of it
            deps |= set(order[:i])
        direct[name] = deps
        writes[name] = tuple(st.writes)
    # every stage after the gate waits for it (a rejected shot goes no further)
    if GATE in order:
        for name in order[order.index(GATE) + 1:]:
            direct[name].add(GATE)
    return Graph(order, {n: tuple(sorted(d, key=order.index)) for n, d in direct.items()}, writes)


def merge(base: Any, outputs: Mapping[str, Any], graph: Graph, names: list[str]) -> Any:
    """``base`` with each stage's declared writes (and ``models`` entries) taken from its output,
    in ``graph.order`` (so a later stage's write wins, as in a sequential run)."""
    item = base
    models = dict(getattr(base, "models", {}) or {})
    for n in graph.order:
        if n not in names or n not in outputs:
            continue
        out = outputs[n]
        if not hasattr(out, "__dataclass_fields__"):
            continue
        item = replace(item, **{f: getattr(out, f) for f in graph.writes[n] if hasattr(out, f)})
        models.update(getattr(out, "models", {}) or {})
    if hasattr(item, "models"):
        item = replace(item, models=models)
    return item


def run_clip(
    graph: Graph,
    item: Any,
    call: Callable[[str, Any], Any],
    parallel: bool = True,
) -> tuple[Any, dict[str, Any]]:
    """Run the clip's stages: ``call(name, item)`` runs one stage (a Ray pool's ``run``).

    Each stage gets the merge of its dependencies' outputs; with ``parallel`` a stage starts as
    soon as every stage it needs is done (a thread per stage, blocking on the stage's pool), else
    one after another in ``graph.order``.

    Returns ``(final_item, outputs)``: the merge of every output, and name -> that stage's own
    output. When the gate rejects the shot the remaining stages are not run. Raises
    :class:`StageError` of the first stage (in ``graph.order``) that failed, with ``stage`` set;
    stages that need it are not run, independent ones already started finish first; the error's
    ``outputs`` attribute holds the outputs of the stages that finished.
    """
    names = list(graph.order)
    outputs: dict[str, Any] = {}
    errors: dict[str, StageError] = {}
    stop = threading.Event()

    def inputs_of(n: str) -> Any:
        return merge(item, outputs, graph, [d for d in graph.order if d in graph.ancestors(n)])

    def one(n: str) -> None:
        try:
            out = call(n, inputs_of(n))
        except StageError as exc:
            exc.stage = exc.stage or n
            errors[n] = exc
            return
        outputs[n] = out
        if n == GATE and hasattr(out, "shot") and not out.shot.kept:
            stop.set()

    if not parallel:
        for n in names:
            if stop.is_set() or errors:
                break
            one(n)
    else:
        done = {n: threading.Event() for n in names}

        def worker(n: str) -> None:
            try:
                for d in graph.needs[n]:
                    if d in done:
                        done[d].wait()
                if stop.is_set() or any(d in errors or (d in done and d not in outputs) for d in graph.needs[n]):
                    return
                one(n)
            finally:
                done[n].set()

        threads = [threading.Thread(target=worker, args=(n,), name=f"stage-{n}", daemon=True) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        first = next(n for n in graph.order if n in errors)
        errors[first].outputs = dict(outputs)  # what finished (the people count of a failed clip)
        raise errors[first]
    final = outputs[GATE] if (GATE in outputs and stop.is_set()) else merge(item, outputs, graph, names)
    return final, outputs

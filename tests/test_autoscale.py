"""Self-balancing stage pools (issue 15 §4) on a real local Ray with 4 logical CPUs.

The stages here are real :class:`~talkset.stages.base.Stage` subclasses that sleep (a known cost
per item), run in real Ray actors; nothing of Ray is mocked. The rule under test is the one in
:mod:`talkset.flows.runner`'s docstring.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from talkset.stages.base import Resources, Stage

pytestmark = pytest.mark.timeout(300)

CPUS = 4


@dataclass
class SleepStage(Stage):
    """Sleeps ``seconds`` per item and returns ``(item, pid)``."""

    name: ClassVar[str] = "sleepy"
    resources: ClassVar[Resources] = Resources(cpus=1.0)
    seconds: float = 0.3
    label: str = "sleepy"

    def process(self, item):
        import os

        time.sleep(self.seconds)
        return (item, os.getpid())


@pytest.fixture(scope="module")
def ray_4cpu():
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors import no test module
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=CPUS, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    yield ray
    ray.shutdown()


def _named(seconds: float, label: str) -> SleepStage:
    st = SleepStage(seconds=seconds, label=label)
    st.name = label  # instance attribute: the pool's name in stats
    return st


def _drive(threads: int, items: int, chain) -> list:
    """``threads`` flow threads, each pushing ``items`` items through ``chain(item)``."""
    out, errors = [], []

    def work(t: int) -> None:
        try:
            for k in range(items):
                out.append(chain(f"{t}-{k}"))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    ths = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(240)
    assert not errors, errors
    return out


def test_the_bottleneck_grows_within_the_cluster_and_fixed_counts_stay(ray_4cpu):
    """A slow stage with items queued grows (to the 4 CPUs minus the other actors); a fast stage
    whose queued work stays under one interval keeps its one actor; a fixed pool keeps 1."""
    ray = ray_4cpu
    from talkset.flows.runner import Balancer, StagePool

    fast = StagePool(_named(0.01, "fast"), None)
    slow = StagePool(_named(0.4, "slow"), None)
    fixed = StagePool(_named(0.01, "fixed"), 1)
    used_max = [0.0]
    stop = threading.Event()

    def watch() -> None:  # the CPUs the actors hold never exceed the cluster's
        while not stop.wait(0.1):
            used_max[0] = max(used_max[0], CPUS - ray.available_resources().get("CPU", 0.0))

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        with Balancer({"fast": fast, "slow": slow, "fixed": fixed}, every_s=0.2, idle_s=60) as bal:
            assert [p.name for p in bal.pools] == ["fast", "slow"]  # the fixed pool is never balanced
            out = _drive(6, 6, lambda i: slow.run(fast.run(fixed.run(i)[0])[0]))
        stop.set()
        w.join()
        assert len(out) == 36 and sorted(o[0] for o in out) == sorted(f"{t}-{k}" for t in range(6) for k in range(6))
        # 4 CPUs: fast 1 + fixed 1 + slow grows into the 2 left, no further
        assert slow.actors_max == CPUS - 2, list(slow.actor_history)
        assert len({pid for _, pid in out}) == CPUS - 2  # items really ran on the added actors
        assert fast.actors_max == 1 and fixed.actors_min == fixed.actors_max == 1
        assert list(fixed.actor_history) == [(0.0, 1)]
        assert used_max[0] <= CPUS + 1e-9
        assert bal.added == CPUS - 3 and bal.retired == 0
    finally:
        for p in (fast, slow, fixed):
            p.shutdown()


def test_idle_actors_of_a_finished_stage_make_room_for_the_busy_one(ray_4cpu):
    """Stage A grows while it has the work; then only stage B gets items: A's idle actors are
    retired (down to its minimum of 1) so that B grows into their CPUs."""
    from talkset.flows.runner import Balancer, StagePool

    a = StagePool(_named(0.3, "a"), None)
    b = StagePool(_named(0.3, "b"), None)
    try:
        with Balancer({"a": a, "b": b}, every_s=0.2, idle_s=60) as bal:
            _drive(6, 5, lambda i: a.run(i))
            assert a.actors_max == CPUS - 1  # b holds one CPU
            _drive(6, 6, lambda i: b.run(i))
        assert len(a.actors) == 1 and a.actors_min == 1  # retired down to the minimum, no further
        assert b.actors_max == CPUS - 1, list(b.actor_history)
        assert bal.retired >= CPUS - 2
    finally:
        a.shutdown()
        b.shutdown()


def test_a_cap_from_config_and_the_cpu_check_of_start_pools(ray_4cpu, tmp_path):
    """``max_actors`` caps a pool; fixed counts that ask for more CPUs than the cluster has stop
    ``start_pools`` at once with the CPU error."""
    from talkset.config import CollectConfig
    from talkset.flows.collect import build_stages, start_pools
    from talkset.flows.runner import Balancer, StagePool

    capped = StagePool(_named(0.3, "capped"), None, max_actors=2)
    try:
        with Balancer({"capped": capped}, every_s=0.2, idle_s=60):
            _drive(6, 4, lambda i: capped.run(i))
        assert capped.actors_max == 2
    finally:
        capped.shutdown()

    cfg = CollectConfig(root=str(tmp_path), annotate=False, concurrency={"people": CPUS})
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"ask for \d+(\.\d+)? CPUs but the Ray cluster has 4"):
        start_pools(cfg, build_stages(cfg, "cpu-ask"))
    assert time.perf_counter() - t0 < 5


def test_driver_keeps_nothing_per_finished_source(tmp_path, prefect_api):
    """A functional check (not a timing): ``collect`` on 40 tiny generated sources (1 s each, one
    too-short shot): Prefect's per-task-run State objects and the flow's dependency-tracking
    ``run_results`` in the driver do not grow with the finished sources (before the fix: one State
    copy per task run, two per source), and every source's summary row comes back from the spill."""
    import gc
    import json
    import os

    from prefect.client.schemas.objects import State
    from prefect.context import FlowRunContext

    from talkset.flows.collect import collect
    from talkset.media import run_ffmpeg

    n = 40
    tiny = tmp_path / "tiny.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=16000:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
                "-c:a", "aac", "-shortest", str(tiny)], "tiny source")
    srcs = []
    for i in range(n):
        p = tmp_path / f"tiny_{i:03d}.mp4"
        os.link(tiny, p)
        srcs.append(str(p))
    root = tmp_path / "root"
    shards = root / "tables" / "shots"
    seen: dict[int, tuple[int, int]] = {}
    stop = threading.Event()

    def count() -> tuple[int, int]:
        gc.collect()  # count what is held, not garbage awaiting the collector
        objs = gc.get_objects()
        states = sum(1 for o in objs if issubclass(type(o), State))  # type(): no __class__ lookups
        ctxs = [o for o in objs if type(o) is FlowRunContext]
        return states, max((len(c.run_results) for c in ctxs), default=0)

    def watch() -> None:
        while not stop.wait(0.2):
            done = sum(1 for _ in shards.rglob("*.parquet")) if shards.exists() else 0
            for mark in (10, n - 6):
                if done >= mark and mark not in seen:
                    seen[mark] = (done, *count())

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    try:
        summary = collect(sources=srcs, root=str(root), run_id="mem",
                          config={"annotate": False, "max_sources_in_flight": 3, "progress_every_s": 3600,
                                  "people_threads": 1})  # the actors fit the 4-CPU Ray this module started
    finally:
        stop.set()
        w.join()
    print("driver at (finished sources, State objects, run_results entries):", seen)
    assert summary["sources"] == n and summary["failures"] == 0
    assert [r["source"] for r in summary["per_source"]] == srcs  # submission order, from the spill
    lines = (root / "_runs" / "mem.sources.jsonl").read_text().splitlines()
    assert len(lines) == n and {json.loads(x)["i"] for x in lines} == set(range(n))
    (d1, states1, _linked1), (d2, states2, linked2) = seen[10], seen[n - 6]
    assert d2 - d1 >= 20, seen
    # before: >= 2 more State objects and ~20 more run_results entries per finished source
    assert states2 - states1 < 0.25 * (d2 - d1), seen
    assert linked2 <= 60, seen  # bounded by the sources in flight, not the finished ones

"""Ray actor pools for stages, with bounded in-flight work, that balance themselves.

Each stage runs as Ray actors that ask for the stage's declared resources (GPUs only where the
cluster has them). The flow's threads call :meth:`StagePool.run`, which blocks until one of the
pool's actors is free; the number of flow threads therefore bounds in-flight work per stage
(backpressure) and several videos move through different stages at once (streaming).

How many actors (issue 15 §4). A stage given a count (``concurrency: {people: 2}``) keeps exactly
that many. A stage without one gets an *autoscaling* pool: it starts with ``min_actors`` (1) and
one :class:`Balancer` thread in the driver looks at every autoscaling pool each
``autoscale_every_s`` (1 s) and applies this rule:

1. *Grow the bottleneck.* Among the pools with flow threads waiting for an actor, the one with
   the largest ``queued items x measured seconds per item`` (mean wall seconds inside the actors;
   before the first item ends, the oldest running item's age counted from when the pool's first
   actor finished loading: the people stage's first shot can take minutes) gets one more actor, if that
   queued work is at least one balancing interval (a write stage that waits 10 ms never grows),
   it is below its ``max_actors`` (config ``max_actors: {stage: n}``; else only the cluster
   bounds it) and ``ray.available_resources()`` has room for one more actor's CPUs (and GPUs).
   One actor is added per pool at a time and it joins the free actors only once its ``setup()``
   (model loading) has finished, so a flow thread never waits on a constructor and the balancer
   never overshoots while an actor is still loading (YOLO + ByteTrack load in 1-3 s here).
2. *Make room where the work is.* When the bottleneck has no room, the longest-idle actor of a
   pool with nothing queued (above its minimum, idle >= one interval) is retired, so its CPUs go to
   the bottleneck at the next look; any actor idle for ``autoscale_idle_s`` (30 s) is retired too.
   Free actors are kept last-in-first-out, so a pool with spare actors keeps reusing the same warm
   one and the spare one's idle time shows.

Measured reasons: on the talk-show edit the stages' actor-seconds per video-second differ by 70x
(pose 1.84, people 1.69, speaking 1.21, faces 0.37, clip 0.18, shots 0.05, align 0.03; 2-core VM,
``benchmarks/README.md``), so equal counts leave the cheap stages' CPUs idle while items queue for
pose and people; queue x seconds picks those two. Ray's own autoscaling actor pools belong to Ray
Data, which talkset does not use (Prefect task runs per source, Ray actors per stage).
``tests/test_autoscale.py`` checks the rule on a local Ray with a sleeping stage.

The "asks more than the cluster" check (:func:`talkset.flows.collect.start_pools`) counts fixed
counts and the minimum of autoscaling pools; growth never asks for more than is free.

An actor that dies mid-item (kill -9, node loss) is restarted by Ray (``max_restarts=-1``) and
the call is retried up to ``max_task_retries`` times; past that the item becomes a ``failures`` row.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import ray

from talkset import env
from talkset.stages.base import Stage, StageError

log = logging.getLogger("talkset.runner")

INTERVALS_KEPT = 256  # per stage, for the run summary (bounded: the driver's memory stays flat)


@ray.remote
class StageActor:
    """Hosts one stage instance: ``setup()`` once, then ``process`` per item."""

    def __init__(self, stage: Stage):
        env.configure(threads=max(1, int(os.environ.get("TALKSET_ACTOR_THREADS", "1"))))
        self.stage = stage
        t0 = time.perf_counter()
        self.stage.setup()
        self.setup_s = time.perf_counter() - t0

    def device(self) -> str:
        """The torch device the stage resolved ("auto" -> cuda:0 or cpu), where it keeps one; else ""."""
        dev = getattr(self.stage, "_device", None)
        try:
            dev = dev() if callable(dev) else dev
        except Exception:  # noqa: BLE001 - a report, never a reason to fail the item
            return ""
        return str(dev or "")

    def process(self, item: Any) -> dict:
        """Returns ``{"ok": bool, "out" | "error", "seconds", "node_id", "pid"}``."""
        ctx = ray.get_runtime_context()
        started = time.time()
        t0 = time.perf_counter()
        c0 = os.times()
        info = {"node_id": ctx.get_node_id(), "pid": os.getpid(), "host": socket.gethostname(), "started": started,
                "device": self.device()}
        try:
            out = self.stage.run(item)
            c1 = os.times()
            # own threads + finished child processes (ffmpeg)
            info["cpu_seconds"] = sum(getattr(c1, f) - getattr(c0, f) for f in ("user", "system", "children_user", "children_system"))
            return {"ok": True, "out": out, "seconds": time.perf_counter() - t0, **info}
        except StageError as exc:
            return {"ok": False, "error": exc.reason, "seconds": time.perf_counter() - t0, **info}
        except Exception as exc:  # a bug or a bad input the stage did not foresee
            return {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - t0,
                **info,
            }


def cluster_has_gpus() -> bool:
    return float(ray.cluster_resources().get("GPU", 0)) > 0


def stage_gpus(stage: Stage) -> float:
    """GPUs one actor of ``stage`` would ask for on a GPU cluster: ``stage.gpus_wanted()`` where the
    stage defines it (its backend decides: MediaPipe pose uses none), else ``resources.gpus``."""
    wanted = getattr(stage, "gpus_wanted", None)
    return float(wanted()) if callable(wanted) else float(stage.resources.gpus)


def stage_cpus(stage: Stage, gpu_cluster: bool = False) -> float:
    """CPUs one actor of ``stage`` asks Ray for: ``stage.cpus_wanted(gpu_cluster)`` where the stage
    defines it (the people stage's ONNX Runtime threads are used only on CPU nodes), else
    ``resources.cpus``."""
    wanted = getattr(stage, "cpus_wanted", None)
    return float(wanted(gpu_cluster)) if callable(wanted) else float(stage.resources.cpus)


def actor_asks(stage: Stage, gpu_cluster: bool) -> tuple[float, float]:
    """``(CPUs, GPUs)`` one actor of ``stage`` asks Ray for: GPUs only on a cluster that has them
    and where the stage uses them (:func:`stage_gpus`), CPUs for that placement (:func:`stage_cpus`).
    One rule for :class:`StagePool` and the "asks for more than the cluster has" check."""
    gpus = stage_gpus(stage) if gpu_cluster else 0.0
    return stage_cpus(stage, gpus > 0), gpus


@dataclass
class StageStats:
    items: int = 0
    failures: int = 0
    seconds: float = 0.0  # wall seconds inside actors' process()
    cpu_seconds: float = 0.0  # CPU seconds of the actor processes (successful items)
    nodes: set = field(default_factory=set)
    pids: set = field(default_factory=set)
    devices: set = field(default_factory=set)  # torch devices the actors used (stages that report one)
    #: the latest items' ``(item id, start, end)`` inside the actor, epoch seconds (bounded)
    intervals: deque = field(default_factory=lambda: deque(maxlen=INTERVALS_KEPT))


class StagePool:
    """Actors of one stage; thread-safe blocking :meth:`run`.

    ``num_actors`` fixes the count; ``None`` makes the pool autoscaling between ``min_actors`` and
    ``max_actors`` (``None``: only the cluster's free resources bound it), grown and shrunk by a
    :class:`Balancer` through :meth:`add_actor` / :meth:`retire_idle`."""

    def __init__(self, stage: Stage, num_actors: int | None = 1, use_gpus: str = "auto", max_task_retries: int = 2,
                 min_actors: int = 1, max_actors: int | None = None):
        self.stage = stage
        self.name = stage.name
        self.num_cpus, self.num_gpus = actor_asks(stage, use_gpus != "never" and cluster_has_gpus())
        self.autoscale = num_actors is None
        if self.autoscale:
            self.min_actors = max(1, int(min_actors))
            self.max_actors = None if max_actors is None else max(self.min_actors, int(max_actors))
        else:
            self.min_actors = self.max_actors = max(1, int(num_actors))
        self._opts = dict(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_restarts=-1,
            max_task_retries=max_task_retries,
            scheduling_strategy="SPREAD",
            name=None,
        )
        self.actors = [StageActor.options(**self._opts).remote(stage) for _ in range(self.min_actors)]
        # last in, first out: the warm actor is reused and a spare one's idle time shows (retirement)
        self._free: queue.LifoQueue = queue.LifoQueue()
        self._idle_since: dict[int, float] = {}
        for a in self.actors:
            self._put_free(a)
        self._pending: list = []  # (actor, ready ref): added, still loading
        # the first actor's setup end (seen by the balancer): before an item ends, a running item's
        # age counted from there is a lower bound of its seconds that excludes the actor's start-up
        self._boot = [a.device.remote() for a in self.actors]
        self._ready_at: float | None = None
        self.stats = StageStats()
        self._lock = threading.Lock()
        self.waiting = 0  # flow threads waiting for a free actor
        self.running = 0  # items inside actors now
        self.started: list[float] = []  # monotonic start times of running items
        self._t0 = time.monotonic()
        #: ``(seconds since the pool started, actor count)`` at each change (bounded)
        self.actor_history: deque = deque([(0.0, len(self.actors))], maxlen=INTERVALS_KEPT)
        self.actors_min = self.actors_max = len(self.actors)

    def _put_free(self, actor) -> None:
        self._idle_since[id(actor)] = time.monotonic()
        self._free.put(actor)

    def _record_count(self) -> None:
        n = len(self.actors)
        self.actor_history.append((round(time.monotonic() - self._t0, 2), n))
        self.actors_min, self.actors_max = min(self.actors_min, n), max(self.actors_max, n)

    def status(self) -> str:
        """``name done/running/waiting`` for progress lines."""
        with self._lock:
            age = f" {time.monotonic() - min(self.started):.0f}s" if self.started else ""
            return (f"{self.name} {self.stats.items} done, {self.running} running{age}, {self.waiting} queued, "
                    f"{len(self.actors)} actors")

    # -- balancing (autoscaling pools) ----------------------------------------------------------
    def seconds_per_item(self) -> float:
        """Mean wall seconds inside the actors per finished item; before the first one ends, the age
        of the oldest running item counted from when the pool's first actor was ready (a lower bound
        without the actor's start-up); 0.0 while no actor is ready."""
        with self._lock:
            if self.stats.items:
                return self.stats.seconds / self.stats.items
            if self.started and self._ready_at is not None:
                return max(0.0, time.monotonic() - max(min(self.started), self._ready_at))
            return 0.0

    def queued_seconds(self) -> float:
        """``queued items x seconds per item``: the work waiting for this stage (the bottleneck score)."""
        return self.waiting * self.seconds_per_item()

    def can_grow(self) -> bool:
        return self.autoscale and not self._pending and (
            self.max_actors is None or len(self.actors) < self.max_actors)

    def add_actor(self) -> None:
        """Start one more actor; it joins the free ones once its ``setup()`` is done (:meth:`poll`)."""
        actor = StageActor.options(**self._opts).remote(self.stage)
        with self._lock:
            self.actors.append(actor)
            self._pending.append((actor, actor.device.remote()))
            self._record_count()

    def poll(self) -> None:
        """Move actors whose setup finished to the free ones (a setup that failed retires the actor)."""
        if self._ready_at is None and self._boot:
            ready, _ = ray.wait(self._boot, num_returns=1, timeout=0)
            if ready:
                self._ready_at, self._boot = time.monotonic(), []
        if not self._pending:
            return
        ready, _ = ray.wait([r for _, r in self._pending], num_returns=len(self._pending), timeout=0)
        for actor, ref in list(self._pending):
            if ref in ready:
                self._pending.remove((actor, ref))
                try:
                    ray.get(ref)
                except Exception:  # noqa: BLE001 - its setup failed: the pool keeps the actors it has
                    self._drop(actor)
                    continue
                self._put_free(actor)

    def _has_spare(self) -> bool:
        """An autoscaling pool with more loaded actors than its minimum (one may be retired)."""
        return self.autoscale and len(self.actors) - len(self._pending) > self.min_actors

    def idle_for(self) -> float:
        """Seconds the longest-idle free actor has been idle (0.0 when none is free or none is spare)."""
        if not self._has_spare():
            return 0.0
        with self._free.mutex:
            bottom = self._free.queue[0] if self._free.queue else None
        return time.monotonic() - self._idle_since.get(id(bottom), time.monotonic()) if bottom is not None else 0.0

    def retire_idle(self) -> bool:
        """Retire the longest-idle free actor if the pool stays at or above its minimum."""
        if not self._has_spare():
            return False
        with self._free.mutex:  # the bottom of the LIFO queue is the longest idle
            if not self._free.queue:
                return False
            actor = self._free.queue.pop(0)
        self._drop(actor)
        return True

    def _drop(self, actor) -> None:
        with self._lock:
            if actor in self.actors:
                self.actors.remove(actor)
            self._idle_since.pop(id(actor), None)
            self._record_count()
        try:
            ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            log.debug("%s: retiring an actor: %s", self.name, exc)

    def run(self, item: Any) -> Any:
        """Process ``item`` on a free actor; returns the stage's output or raises
        :class:`StageError` (the stage's reason, or the actor's death after retries)."""
        with self._lock:
            self.waiting += 1
        actor = self._free.get()
        with self._lock:
            self.waiting -= 1
            self.running += 1
            self.started.append(time.monotonic())
        try:
            try:
                res = ray.get(actor.process.remote(item))
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                with self._lock:
                    self.stats.failures += 1
                raise StageError(
                    f"{self.name} actor died and the retries ran out ({type(exc).__name__}); "
                    "re-run collect to retry this item",
                    stage=self.name,
                ) from exc
        finally:
            with self._lock:
                self.running -= 1
                self.started.pop(0)
            self._put_free(actor)
        with self._lock:
            self.stats.items += 1
            self.stats.seconds += res["seconds"]
            self.stats.cpu_seconds += res.get("cpu_seconds", 0.0)
            self.stats.nodes.add(res["node_id"])
            self.stats.pids.add(res["pid"])
            if res.get("device"):
                self.stats.devices.add(res["device"])
            if "started" in res:
                item_id = getattr(item, "clip_id", None) or getattr(item, "source_id", None) or ""
                self.stats.intervals.append((item_id, res["started"], res["started"] + res["seconds"]))
            if not res["ok"]:
                self.stats.failures += 1
        if not res["ok"]:
            raise StageError(res["error"], stage=self.name)
        return res["out"]

    def shutdown(self) -> None:
        for a in list(self.actors):
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass


def room_for(pool: StagePool, available: dict[str, float]) -> bool:
    """Whether ``available`` (``ray.available_resources()``) fits one more actor of ``pool``."""
    return (available.get("CPU", 0.0) + 1e-9 >= pool.num_cpus
            and (pool.num_gpus <= 0 or available.get("GPU", 0.0) + 1e-9 >= pool.num_gpus))


class Balancer:
    """The driver thread that grows and shrinks the autoscaling pools (rule: module docstring).

    ``with Balancer(pools, every_s, idle_s):`` runs it while the block runs; :meth:`step` is one
    look (also called by the tests). Fixed pools are never touched."""

    def __init__(self, pools: dict[str, StagePool], every_s: float = 1.0, idle_s: float = 30.0):
        self.pools = [p for p in pools.values() if p.autoscale]
        self.every_s = max(0.05, float(every_s))
        self.idle_s = float(idle_s)
        self.added = 0
        self.retired = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> str:
        """One balancing look; returns what it did (``"add people"``, ``"retire clip"``, ``""``)."""
        for p in self.pools:
            p.poll()
        for p in self.pools:  # long-idle spares go back to the cluster whatever else happens
            if p.waiting == 0 and p.idle_for() >= self.idle_s and p.retire_idle():
                self.retired += 1
                return f"retire {p.name}"
        wanting = [p for p in self.pools if p.waiting > 0 and p.can_grow() and p.queued_seconds() >= self.every_s]
        if not wanting:
            return ""
        neck = max(wanting, key=lambda p: p.queued_seconds())
        if room_for(neck, ray.available_resources()):
            neck.add_actor()
            self.added += 1
            return f"add {neck.name}"
        idle = [p for p in self.pools if p is not neck and p.waiting == 0 and p.idle_for() >= self.every_s]
        for p in sorted(idle, key=lambda p: -p.idle_for()):
            if p.retire_idle():
                self.retired += 1
                return f"retire {p.name}"
        return ""

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - balancing is an optimisation; the run goes on with what it has
                log.warning("stage pool balancing failed (the pools keep their actors): %s", exc)

    def __enter__(self) -> Self:
        if self.pools:
            self._thread = threading.Thread(target=self._loop, name="talkset-balancer", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def init_ray(address: str | None = None, num_cpus: int | None = None) -> dict:
    """Connect to ``address`` / ``$RAY_ADDRESS`` or start a local Ray bound to 127.0.0.1.

    Returns ``{"address", "nodes", "cpus", "gpus", "started": bool}``.
    """
    env.configure(threads=None)
    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        runtime_env = {"env_vars": {k: os.environ[k] for k in env.OFFLINE_ENV if k in os.environ}}
        for k in ("TALKSET_WEIGHTS", "YOLO_CONFIG_DIR", "PYTHONPATH"):
            if k in os.environ:
                runtime_env["env_vars"][k] = os.environ[k]
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(
                address="local",  # always a new local instance, never a stray cluster on this host
                num_cpus=num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                runtime_env=runtime_env,
                log_to_driver=False,
            )
            started = True
    res = ray.cluster_resources()
    return {
        "address": address or "local",
        "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
        "cpus": res.get("CPU", 0),
        "gpus": res.get("GPU", 0),
        "started": started,
    }

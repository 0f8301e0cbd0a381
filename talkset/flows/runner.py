"""Ray actor pools for stages, with bounded in-flight work.

Each stage runs as ``n`` Ray actors that ask for the stage's declared resources (GPUs only where
the cluster has them). The flow's threads call :meth:`StagePool.run`, which blocks until one of the
pool's actors is free; the number of flow threads therefore bounds in-flight work per stage
(backpressure) and several videos move through different stages at once (streaming).

An actor that dies mid-item (kill -9, node loss) is restarted by Ray (``max_restarts=-1``) and
the call is retried up to ``max_task_retries`` times; past that the item becomes a ``failures`` row.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray

from talkset import env
from talkset.stages.base import Stage, StageError

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
    """``num_actors`` actors of one stage; thread-safe blocking :meth:`run`."""

    def __init__(self, stage: Stage, num_actors: int = 1, use_gpus: str = "auto", max_task_retries: int = 2):
        self.stage = stage
        self.name = stage.name
        res = stage.resources
        gpus = stage_gpus(stage) if (use_gpus != "never" and cluster_has_gpus()) else 0
        self.num_gpus = gpus
        opts = dict(
            num_cpus=res.cpus,
            num_gpus=gpus,
            max_restarts=-1,
            max_task_retries=max_task_retries,
            scheduling_strategy="SPREAD",
            name=None,
        )
        self.actors = [StageActor.options(**opts).remote(stage) for _ in range(max(1, num_actors))]
        self._free: queue.Queue = queue.Queue()
        for a in self.actors:
            self._free.put(a)
        self.stats = StageStats()
        self._lock = threading.Lock()
        self.waiting = 0  # flow threads waiting for a free actor
        self.running = 0  # items inside actors now
        self.started: list[float] = []  # monotonic start times of running items

    def status(self) -> str:
        """``name done/running/waiting`` for progress lines."""
        with self._lock:
            age = f" {time.monotonic() - min(self.started):.0f}s" if self.started else ""
            return f"{self.name} {self.stats.items} done, {self.running} running{age}, {self.waiting} queued"

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
            self._free.put(actor)
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
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass


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

"""The ``collect`` flow: sources -> download -> shots -> people -> clip -> (pose, faces, speaking,
align) -> write, as in the MIT paper's collection pipeline (Sec. 3.1).

Orchestration: a Prefect 3 flow. Each source is a Prefect task run (``source:<id>``) with a nested
``download`` task run that Prefect retries with exponential backoff; the stages themselves run as
Ray actors (:mod:`talkset.flows.runner`) that declare their resources and load their models once. Sources
move through the stages concurrently (``max_sources_in_flight``) and the shots of one source too
(``max_shots_in_flight``): a video's shots are annotated while the next video downloads. The
number of flow threads bounds in-flight work per stage (backpressure). Within one clip the stages
follow the pipeline graph of :mod:`talkset.flows.graph` (built from the stages' reads/writes): a
stage starts as soon as the stages it needs are done, so pose runs alongside faces -> speaking
(``parallel_stages: false``: one after another).

Failures never stop the run: a stage error on a source, shot or clip becomes a ``failures`` row
and the rest goes on. Re-running with the same root resumes: committed clips are skipped, stray
temporary files are removed, and nothing is written twice.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from talkset import env

env.configure(threads=None)

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from talkset.config import CollectConfig  # noqa: E402
from talkset.flows.graph import Graph, clip_graph, run_clip  # noqa: E402
from talkset.flows.runner import Balancer, StagePool, actor_asks, init_ray  # noqa: E402
from talkset.items import Clip, Shot, Source, clip_id_for, source_id_for  # noqa: E402
from talkset.sources import read_sources  # noqa: E402
from talkset.stages.base import StageError  # noqa: E402
from talkset.stages.write import shot_labels  # noqa: E402
from talkset.storage.root import DatasetRoot  # noqa: E402

log = logging.getLogger("talkset.collect")

ANNOTATION_STAGES = ("pose", "faces", "speaking", "align")


def build_stages(cfg: CollectConfig, run_id: str) -> dict[str, Any]:
    """Stage instances for a run, in pipeline order (annotation stages only when
    ``cfg.annotate``)."""
    from talkset.stages.clip import ClipStage
    from talkset.stages.download import DownloadStage
    from talkset.stages.people import PeopleStage
    from talkset.stages.shots import ShotsStage
    from talkset.stages.write import WriteStage

    stages: dict[str, Any] = {
        "download": DownloadStage(root=cfg.root, timeout_s=cfg.download_timeout_s),
        "shots": ShotsStage(detector=cfg.detector, threshold=cfg.threshold, min_shot_s=cfg.min_shot_s),
        "people": PeopleStage(
            weights=cfg.yolo_weights,
            conf=cfg.person_conf,
            imgsz=cfg.track_imgsz,
            runtime=cfg.runtime,
            threads=cfg.people_threads,
            min_people=cfg.min_people,
            max_people=cfg.max_people,
            presence_frac=cfg.presence_frac,
            min_box_frac=cfg.min_box_frac,
            trim_to_present=cfg.trim_to_present,
            presence_gap_s=cfg.presence_gap_s,
            min_span_s=cfg.min_shot_s,
            **({"max_camera_motion": cfg.max_camera_motion} if cfg.max_camera_motion is not None else {}),
            **({"filter_fps": cfg.filter_fps} if cfg.filter_fps is not None else {}),
            split_screens=cfg.split_screens,  # issue 11 §6
            max_overlay_share=cfg.max_overlay_share,
            max_occlusion_share=cfg.max_occlusion_share,
        ),
        "clip": ClipStage(root=cfg.root, fps=cfg.clip_fps, audio_rate=cfg.audio_rate, crf=cfg.crf),
    }
    if cfg.annotate:
        from talkset.stages.align import AlignStage
        from talkset.stages.faces import FacesStage
        from talkset.stages.pose import PoseStage
        from talkset.stages.speaking import SpeakingStage

        stages["pose"] = PoseStage(backend=cfg.pose_backend, model=cfg.pose_model, config=cfg.pose_config,
                                   track_threads=cfg.pose_threads)
        stages["faces"] = FacesStage(weights=cfg.yunet_weights)
        stages["speaking"] = SpeakingStage(talkset_weights=cfg.asd_talkset_weights, ava_weights=cfg.asd_ava_weights,
                                           runtime=cfg.runtime)
        stages["align"] = AlignStage(min_face_area=cfg.min_face_area, min_face_area_ratio=cfg.min_face_area_ratio)
    stages["write"] = WriteStage(root=cfg.root, run_id=run_id)
    return stages


@dataclass
class RunState:
    """Counters shared by the flow's threads (guarded by ``lock``)."""

    cfg: CollectConfig
    root: DatasetRoot
    run_id: str
    pools: dict[str, StagePool]
    graph: Graph | None = None
    part_graph: Graph | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    sources: int = 0
    sources_done: int = 0
    sources_skipped: int = 0
    shots: int = 0
    clips_kept: int = 0
    clips_resumed: int = 0
    failures: int = 0
    #: per-source summary rows, spilled as JSON lines to ``root/_runs/<run_id>.sources.jsonl`` as
    #: sources finish (the driver keeps none of them in memory until the run's end)
    sources_log: str | None = None

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def progress(self, msg: str) -> None:
        with self.lock:
            line = (
                f"[collect] sources {self.sources_done}/{self.sources} | shots {self.shots} | "
                f"clips {self.clips_kept} | failures {self.failures} | {msg}"
            )
        print(line, file=sys.stderr, flush=True)


def _fail(state: RunState, source_id: str, stage: str, item: str, error: str) -> None:
    state.root.write_failure(source_id, stage, item, error, state.run_id)
    state.add(failures=1)
    state.progress(f"FAILED {stage} on {item}: {error}")


def _part_graph(graph: Graph) -> Graph:
    """``graph`` without the gate (people, run once per shot) and ``write`` (run per clip after the
    clip is known not to be rejected): the stages that run on each clip of a shot."""
    drop = {"people", "write"}
    order = tuple(n for n in graph.order if n not in drop)
    return Graph(order, {n: tuple(d for d in graph.needs[n] if d not in drop) for n in order},
                 {n: graph.writes[n] for n in order})


def _discard_media(root: DatasetRoot, item: Clip) -> None:
    """Remove the mp4 / wav the clip stage wrote for a clip that is not committed (rejected)."""
    for p in (item.video_path, item.audio_path):
        if p:
            path = Path(p) if os.path.isabs(p) else root.root / p
            path.unlink(missing_ok=True)


def _kept_from(shot: Shot, row: dict) -> Shot:
    """The record of a shot whose clip was committed by an earlier run: kept, with the people count,
    camera motion and issue 11 §6 labels (layout, seams, overlay / occlusion share) of its ``clips`` row."""
    labels = {k: row.get(k) for k in ("layout", "seams", "overlay_share", "occlusion_share")}
    return replace(shot, kept=True, reason="", num_people=row["num_people"], camera_motion=row["camera_motion"],
                   **labels)


def _resumed(state: RunState, shot: Shot, prior: dict | None) -> tuple[Shot, list[str], list[str]] | None:
    """The shot's record when its clips are already committed, else ``None``.

    With ``prior`` (the shot's row in a ``shots`` shard of an earlier run of this source, which
    did not complete because of another shot): every clip it lists is committed and it had no
    error. Without: (whole-shot clips only, ``trim_to_present`` off) its part-0 clip is committed,
    as before shots could give several clips. With trimming on and no prior row the people stage
    runs again and each committed clip is skipped (:func:`_process_shot`)."""
    root, sid = state.root, shot.source_id
    if prior is not None and not prior["reason"].startswith("error:"):
        ids = list(prior.get("clip_ids") or ([prior["clip_id"]] if prior.get("clip_id") else []))
        rows = [root.committed_clip_row(sid, c) for c in ids]
        if ids and all(r is not None for r in rows):
            state.add(clips_resumed=len(ids), clips_kept=len(ids))
            return _kept_from(shot, rows[0]), ids, list(prior.get("rejected") or [])
    if not state.cfg.trim_to_present:
        clip_id = clip_id_for(sid, shot.shot_idx)
        row = root.committed_clip_row(sid, clip_id)
        if row is not None:
            state.add(clips_resumed=1, clips_kept=1)
            return _kept_from(shot, row), [clip_id], []
    return None


def _process_shot(
    state: RunState, video: Source, shot: Shot, prior: dict | None = None
) -> tuple[Shot, list[str], list[str]]:
    """people once, then per clip of the shot (one per span with ``trim_to_present``, else the
    whole shot): clip -> annotation stages -> write.

    Returns ``(shot record, committed clip ids in part order, rejected)`` where ``rejected`` holds
    ``"<clip_id>: <reason>"`` for each clip a stage rejected (``Clip.rejected``, e.g. the face-size
    rules): not written, not a failure. A clip already committed is skipped (resume). The record is
    ``kept`` when at least one clip is committed and no stage failed; a stage error on any clip
    makes it ``error:<stage>`` (a ``failures`` row; the source is then re-run later); a shot whose
    every clip was rejected gets the first clip's reason."""
    if shot.reason:  # too_short: decided by the shots stage
        return shot, [], []
    resumed = _resumed(state, shot, prior)
    if resumed is not None:
        return resumed
    cfg, pools, root = state.cfg, state.pools, state.root
    first_id = clip_id_for(video.source_id, shot.shot_idx)
    item = Clip(source=video, shot=shot, clip_id=first_id, clip_fps=cfg.clip_fps)
    try:
        item = pools["people"].run(item)
    except StageError as exc:
        stage = exc.stage or "people"
        _fail(state, video.source_id, stage, first_id, exc.reason)
        return replace(shot, kept=False, reason=f"error:{stage}"), [], []
    if not item.shot.kept:
        return item.shot, [], []
    from talkset.stages.people import clips_for_spans

    ids: list[str] = []
    rejected: list[str] = []
    error = None
    for part in clips_for_spans(item):
        if root.committed_clip_row(video.source_id, part.clip_id) is not None:
            ids.append(part.clip_id)
            state.add(clips_resumed=1, clips_kept=1)
            continue
        try:
            out, _outputs = run_clip(state.part_graph, part, lambda name, it: pools[name].run(it),
                                     parallel=cfg.parallel_stages)
            if out.rejected:
                _discard_media(root, out)
                rejected.append(f"{part.clip_id}: {out.rejected}")
                state.progress(f"clip {part.clip_id} rejected: {out.rejected}")
                continue
            if "write" in pools:
                pools["write"].run(out)
        except StageError as exc:
            stage = exc.stage or "write"
            _fail(state, video.source_id, stage, part.clip_id, exc.reason)
            error = error or f"error:{stage}"
            continue
        ids.append(part.clip_id)
        state.add(clips_kept=1)
        state.progress(f"clip {part.clip_id} written ({len(part.person_tracks)} people)")
    if error:
        return replace(item.shot, kept=False, reason=error), ids, rejected
    if not ids:
        reason = rejected[0].split(": ", 1)[1] if rejected else "no_clip"
        return replace(item.shot, kept=False, reason=reason), ids, rejected
    return item.shot, ids, rejected


@task(name="download", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1))
def download_task(pool: StagePool, video: Source) -> Source:
    """Fetch (URL) or link (path) one source and probe it; Prefect retries with backoff."""
    return pool.run(video)


@task(name="source", cache_policy=NO_CACHE, task_run_name="source:{source_id}")
def process_source(state: RunState, source: str, source_id: str) -> dict:
    """All stages for one source; returns its summary row. Never raises for bad input."""
    t0 = time.perf_counter()
    summary = {"source": source, "source_id": source_id, "shots": 0, "clips": 0, "failures": 0, "status": "ok",
               "started_at": datetime.now(timezone.utc).isoformat()}
    try:
        return _process_source(state, source, source_id, summary, t0)
    finally:
        summary["ended_at"] = datetime.now(timezone.utc).isoformat()


def _process_source(state: RunState, source: str, source_id: str, summary: dict, t0: float) -> dict:
    root = state.root
    if root.source_complete(source_id):
        n = len(root.committed_clip_ids(source_id))
        state.add(sources_skipped=1, sources_done=1, clips_kept=n, clips_resumed=n)
        summary.update(status="already complete", clips=n)
        state.progress(f"{source_id}: already complete, skipped")
        return summary
    root.clear_failures(source_id)
    video = Source(url=source, source_id=source_id)
    is_url = source.startswith(("http://", "https://"))
    try:
        # URLs are retried with backoff (network); a local file that fails will fail again.
        dl = download_task.with_options(retries=state.cfg.download_retries if is_url else 0)
        video = dl(state.pools["download"], video)
    except StageError as exc:
        _fail(state, source_id, "download", source, exc.reason)
        state.add(sources_done=1)
        summary.update(status="failed: download", failures=1)
        return summary
    try:
        video = state.pools["shots"].run(video)
    except StageError as exc:
        _fail(state, source_id, "shots", source, exc.reason)
        state.add(sources_done=1)
        summary.update(status="failed: shots", failures=1)
        return summary
    shots: list[Shot] = video.shots or []
    state.add(shots=len(shots))
    state.progress(f"{source_id}: {len(shots)} shots")
    prior = root.shot_rows(source_id) if root.shots_committed(source_id) else {}
    with ThreadPoolExecutor(max_workers=max(1, state.cfg.max_shots_in_flight), thread_name_prefix=f"shots-{source_id}") as ex:
        done = list(ex.map(lambda s: _process_shot(state, video, s, prior.get(s.shot_idx)), shots))
    rows = []
    for s, clip_ids, rejected in done:
        rows.append(
            {
                "shot_idx": s.shot_idx,
                "start_frame": s.start_frame,
                "end_frame": s.end_frame,
                "start_s": s.start_s,
                "end_s": s.end_s,
                "kept": bool(s.kept),
                "reason": s.reason,
                "num_people": s.num_people,
                "camera_motion": s.camera_motion,
                "clip_id": clip_ids[0] if clip_ids else None,  # the first clip (compatibility)
                "clip_ids": clip_ids,
                "rejected": rejected,
                "run_id": state.run_id,
                **shot_labels(s),  # issue 11 §6
            }
        )
    root.write_shard("shots", source_id, "shots", rows, {"run_id": state.run_id, "source": source})
    state.add(sources_done=1)
    summary.update(
        shots=len(rows),
        clips=sum(len(r["clip_ids"]) for r in rows),
        failures=sum(r["reason"].startswith("error:") for r in rows),
        seconds=round(time.perf_counter() - t0, 2),
    )
    state.progress(f"{source_id}: done ({summary['clips']} clips)")
    return summary


def _fixed_or_min(cfg: CollectConfig, name: str) -> int:
    """Actors a stage starts with: its fixed ``concurrency`` count, else the autoscaling minimum 1."""
    return max(1, int(cfg.concurrency.get(name) or 1))


def _local_cpus_needed(stages: dict[str, Any], cfg: CollectConfig) -> int:
    """Logical CPUs of a local Ray: what the starting actors ask for, at least the machine's cores,
    plus the machine's cores again as room for autoscaling pools to grow (one math thread per actor)."""
    need = sum(st.resources.cpus * _fixed_or_min(cfg, name) for name, st in stages.items())
    grows = any(name not in cfg.concurrency for name in stages)
    cores = os.cpu_count() or 1
    return max(cores, int(need + 0.999)) + (cores if grows else 0)


def start_pools(cfg: CollectConfig, stages: dict[str, Any]) -> tuple[dict[str, StagePool], dict]:
    """Connect to (or start) Ray and start every stage's actors. Returns ``(pools, ray_info)``.

    A stage named in ``cfg.concurrency`` gets that many actors (fixed); the others get an
    autoscaling pool (1 actor to start, at most ``cfg.max_actors[stage]`` where given; see
    :mod:`talkset.flows.runner`). Raises ``ValueError`` when the starting actors (fixed counts and
    the autoscaling minimum) ask for more CPUs, or (on a cluster with GPUs) more GPUs, than the
    cluster has (they would wait forever); a local Ray started here is shut down first."""
    import ray

    ray_info = init_ray(cfg.ray_address, num_cpus=cfg.ray_num_cpus or _local_cpus_needed(stages, cfg))
    gpu_cluster = cfg.use_gpus != "never" and ray_info["gpus"] > 0
    asks = {name: actor_asks(st, gpu_cluster) for name, st in stages.items()}
    asked = sum(asks[name][0] * _fixed_or_min(cfg, name) for name in stages)
    if asked > ray_info["cpus"]:
        if ray_info["started"]:
            ray.shutdown()
        raise ValueError(
            f"the stage actors ask for {asked:g} CPUs but the Ray cluster has {ray_info['cpus']:g}: "
            "lower `concurrency` or add nodes (every actor must fit, or the run would wait forever)"
        )
    gpus = ray_info["gpus"]
    asked_gpus = sum(asks[name][1] * _fixed_or_min(cfg, name) for name in stages)
    if gpu_cluster and asked_gpus > gpus + 1e-9:
        if ray_info["started"]:
            ray.shutdown()
        raise ValueError(
            f"the stage actors ask for {asked_gpus:g} GPUs but the Ray cluster has {gpus:g}: "
            "lower `concurrency` of the GPU stages, add GPU nodes or set use_gpus: never "
            "(every actor must fit, or the run would wait forever)"
        )
    pools = {
        name: StagePool(st, cfg.concurrency.get(name) or None, use_gpus=cfg.use_gpus,
                        max_task_retries=cfg.max_task_retries, max_actors=cfg.max_actors.get(name))
        for name, st in stages.items()
    }
    return pools, ray_info


@contextmanager
def heartbeat(state: RunState, every_s: float):
    """Print the busy stages' counts every ``every_s`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            busy = [p.status() for p in state.pools.values() if p.running or p.waiting]
            if busy:
                state.progress("; ".join(busy))

    thread = threading.Thread(target=beat, name="collect-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _forget_finished(futures: list) -> None:
    """Drop what Prefect keeps in the driver for task runs whose result was taken.

    Measured (``benchmarks/throughput.py --memory``, tracemalloc diff between 20 and 66 finished
    tiny sources, 2-core VM): the Python heap grew ~2.9 kB per finished source, most of it Prefect's
    ``FlowRunContext.run_results`` (one State copy per task run plus ~20 entries per source: the
    summary row's values and the download task's ``Source`` fields, kept for dependency tracking
    when a result is passed to another task, which this flow never does) and the thread-pool task
    runner's per-task ``cancel_event`` (kept until the flow ends)."""
    from prefect.context import FlowRunContext
    from prefect.utilities.engine import RunType

    ctx = FlowRunContext.get()
    if ctx is None:
        return
    for key, entry in list(ctx.run_results.items()):
        if entry[1] == RunType.TASK_RUN and entry[0].is_final():
            ctx.run_results.pop(key, None)
    events = getattr(ctx.task_runner, "_cancel_events", None)
    if isinstance(events, dict):
        for f in futures:
            events.pop(f.task_run_id, None)


def run_sources(state: RunState, sources: list[str]) -> list[dict]:
    """Submit one ``source`` task run per source, at most ``max_sources_in_flight`` at once, while a
    :class:`~talkset.flows.runner.Balancer` sizes the autoscaling stage pools; returns their summary
    rows in submission order.

    Each finished source's row is appended to ``state.sources_log`` (JSON lines; a temporary file
    when unset) and its Prefect future and states are released at once, so the driver's memory stays
    flat however long the source list; the rows are read back at the end."""
    import json
    import tempfile

    limit = max(1, state.cfg.max_sources_in_flight)
    log_path = state.sources_log
    own = log_path is None
    if own:
        fd, log_path = tempfile.mkstemp(prefix="talkset-sources-", suffix=".jsonl")
        os.close(fd)
    else:
        open(log_path, "w").close()  # a re-used run id starts a fresh log
    order: dict[str, int] = {}
    pending: list = []

    def take(done: list) -> None:
        with open(log_path, "a") as fh:
            for f in done:
                fh.write(json.dumps({"i": order.pop(str(f.task_run_id)), "row": f.result()}, default=str) + "\n")
        _forget_finished(done)

    try:
        with Balancer(state.pools, state.cfg.autoscale_every_s, state.cfg.autoscale_idle_s):
            for i, src in enumerate(sources):
                while len(pending) >= limit:
                    final = [f.state.is_final() for f in pending]  # one look per future: states change meanwhile
                    take([f for f, done in zip(pending, final) if done])
                    pending = [f for f, done in zip(pending, final) if not done]
                    if len(pending) >= limit:
                        time.sleep(0.2)
                fut = process_source.submit(state, src, source_id_for(src))
                order[str(fut.task_run_id)] = i
                pending.append(fut)
            for f in pending:
                f.wait()
            take(pending)
            pending = []
        rows: list = [None] * len(sources)
        with open(log_path) as fh:
            for line in fh:
                rec = json.loads(line)
                rows[rec["i"]] = rec["row"]
        return rows
    finally:
        if own:
            os.unlink(log_path)


def stage_stats(pools: dict[str, StagePool]) -> dict[str, dict]:
    """Per stage: items, failures, seconds and CPU seconds inside actors, nodes, actors, GPUs."""
    return {
        name: {
            "items": p.stats.items,
            "failures": p.stats.failures,
            "seconds": round(p.stats.seconds, 2),
            "cpu_seconds": round(p.stats.cpu_seconds, 2),
            "nodes": sorted(p.stats.nodes),
            "actors": len(p.actors),
            "autoscale": p.autoscale,
            "actors_min": p.actors_min,
            "actors_max": p.actors_max,
            #: ``[seconds since the pool started, actor count]`` at each change (bounded)
            "actor_history": [[t, n] for t, n in p.actor_history],
            "gpus_per_actor": p.num_gpus,
            "devices": sorted(p.stats.devices),
            "intervals": [[i, round(a, 3), round(b, 3)] for i, a, b in p.stats.intervals],
        }
        for name, p in pools.items()
    }


@flow(name="collect", log_prints=True)
def collect(
    sources: list[str] | None = None,
    root: str = "dataset",
    sources_file: str | None = None,
    config: dict | None = None,
    ray_address: str | None = None,
    run_id: str | None = None,
) -> dict:
    """Build or extend a dataset root from sources (URLs or local paths).

    Returns the run summary: ``{"run_id", "sources", "shots", "clips_kept", "clips_resumed",
    "failures", "seconds", "stage_seconds", "nodes", "per_source"}``; also written to
    ``root/_runs/<run_id>.json`` and a Prefect table artifact.
    """
    import ray

    cfg = CollectConfig.from_dict({**(config or {}), "root": root})
    if ray_address:
        cfg.ray_address = ray_address
    srcs = read_sources(sources, sources_file)
    run_id = run_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    droot = DatasetRoot(cfg.root)
    droot.make_dirs()
    cfg.root = str(droot.root)
    stray = droot.remove_stray_tmp()
    stages = build_stages(cfg, run_id)
    t0 = time.perf_counter()
    pools, ray_info = start_pools(cfg, stages)
    graph = clip_graph(stages)
    state = RunState(cfg=cfg, root=droot, run_id=run_id, pools=pools, sources=len(srcs), graph=graph,
                     part_graph=_part_graph(graph), sources_log=str(droot.runs_dir / f"{run_id}.sources.jsonl"))
    droot.runs_dir.mkdir(parents=True, exist_ok=True)
    state.progress(f"run {run_id}: {len(srcs)} sources, ray {ray_info}, removed {stray} stray temp files")
    try:
        with heartbeat(state, cfg.progress_every_s):
            results = run_sources(state, srcs)
        stats = stage_stats(pools)
    finally:
        for p in pools.values():
            p.shutdown()
        if ray_info["started"]:
            ray.shutdown()
    summary = {
        "run_id": run_id,
        "root": cfg.root,
        "sources": len(srcs),
        "sources_skipped": state.sources_skipped,
        "shots": state.shots,
        "clips_kept": state.clips_kept,
        "clips_resumed": state.clips_resumed,
        "failures": state.failures,
        "failures_in_root": droot.count_rows("failures"),
        "seconds": round(time.perf_counter() - t0, 2),
        "stage_seconds": {k: v["seconds"] for k, v in stats.items()},
        "stages": stats,
        "nodes": sorted({n for v in stats.values() for n in v["nodes"]}),
        "ray": ray_info,
        "per_source": results,
        "config": cfg.to_dict(),
    }
    droot.write_run(run_id, summary)
    _artifact(summary)
    print(format_summary(summary), flush=True)
    return summary


def format_summary(s: dict) -> str:
    lines = [
        f"collect {s['run_id']}: {s['sources']} sources ({s['sources_skipped']} already complete), "
        f"{s['shots']} shots, {s['clips_kept']} clips kept ({s['clips_resumed']} from earlier runs), "
        f"{s['failures']} failures, {s['seconds']:.1f} s",
        "  seconds per stage (compute inside actors): "
        + ", ".join(f"{k} {v:.1f}" for k, v in s["stage_seconds"].items()),
        "  actors per stage over the run (min-max, * = autoscaled): "
        + ", ".join(f"{k}{'*' if v.get('autoscale') else ''} {v.get('actors_min')}-{v.get('actors_max')}"
                    for k, v in s.get("stages", {}).items()),
        f"  root: {s['root']}",
    ]
    return "\n".join(lines)


def _artifact(summary: dict) -> None:
    try:
        from prefect.artifacts import create_table_artifact

        rows = [
            {
                "source": r.get("source_id"),
                "status": r.get("status"),
                "shots": r.get("shots"),
                "clips kept": r.get("clips"),
                "failures": r.get("failures"),
                "seconds": r.get("seconds"),
            }
            for r in summary["per_source"]
        ]
        rows += [
            {"source": f"stage:{k}", "status": "", "shots": "", "clips kept": "", "failures": "", "seconds": v}
            for k, v in summary["stage_seconds"].items()
        ]
        create_table_artifact(key="collect-summary", table=rows, description=format_summary(summary))
    except Exception as exc:  # artifacts are a convenience; never fail the run for them
        log.warning("could not create the Prefect artifact: %s", exc)

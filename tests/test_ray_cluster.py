"""``collect`` on a real 2-node Ray cluster (``ray.cluster_utils.Cluster``, both nodes on 127.0.0.1).

(a) actors run on both nodes and the output equals a 1-node run's; (b) a stage actor killed with
SIGKILL while it tracks a clip loses and duplicates nothing; (c) a long source list runs with at
most ``max_sources_in_flight`` sources in flight (measured from Prefect's own task-run times).
Real footage (4 s cuts of two split-screen interviews), real YOLO + ByteTrack, ffmpeg, Parquet.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import clip, cut

from talkset.storage.catalog import connect

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("prefect_api")]

# only the collection stages; 2 actors for the two heavy stages so they can sit on both nodes
FAST = {"annotate": False, "concurrency": {"people": 2, "clip": 2}, "max_sources_in_flight": 2}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("src")
    return [
        str(cut(clip("visualvoice_interview.mp4"), d / "interview_4s.mp4", 2.0, 4.0)),
        str(cut(clip("clearervoice_tse_001.avi"), d / "debate_4s.mp4", 0.0, 4.0)),
    ]


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory):
    """The 1-node output: the same sources through a fresh local Ray."""
    import ray

    from talkset.flows.collect import collect

    assert not ray.is_initialized()
    root = tmp_path_factory.mktemp("one-node")
    summary = collect(sources=sources, root=str(root), config=FAST, run_id="one-node")
    assert not ray.is_initialized()  # collect shut its own Ray down
    assert summary["ray"]["nodes"] == 1 and len(summary["nodes"]) == 1
    assert summary["clips_kept"] == 2 and summary["failures"] == 0
    return root


@pytest.fixture(scope="module")
def cluster(reference):
    """Head + 1 worker node, 4 logical CPUs and 1 declared GPU each (there is no real GPU: the
    GPU stages' actors are placed by Ray as on GPU nodes and fall back to the CPU inside), on
    loopback. The driver connects through ``collect(ray_address=...)`` and is disconnected in
    teardown."""
    import ray
    import ray._private.ray_constants as rc
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    # Ray rewrites a 127.0.0.1 address to the host's "remotely reachable" IP unless multi-node
    # mode is off; with it off, every node and the driver stay on loopback (no public address).
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    mp.setattr(rc, "ENABLE_RAY_CLUSTER", False)
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # a private temp dir: the cluster's address file (ray_current_cluster) must not send other
    # processes' bare ray.init() on this host to this cluster; short, for Ray's socket paths
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    mp.setenv("RAY_TMPDIR", tmp)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=4, num_gpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        mp.undo()
        shutil.rmtree(tmp, ignore_errors=True)


def _raylet_pids(c) -> set[int]:
    import ray._private.ray_constants as rc

    pids = set()
    for node in [c.head_node, *c.worker_nodes]:
        for info in node.all_processes.get(rc.PROCESS_TYPE_RAYLET, []):
            pids.add(info.process.pid)
    return pids


def _ppid_and_title(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        title = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    return ppid, title


def people_actor_busy(c) -> int | None:
    """PID of a people-stage actor of cluster ``c`` that is inside ``process`` right now: a child of
    one of the cluster's raylets, titled ``ray::StageActor.process``, with ByteTrack's ``lap``
    extension loaded (only the people stage tracks). None if there is none."""
    raylets = _raylet_pids(c)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            ppid, title = _ppid_and_title(pid)
            if ppid not in raylets or not title.startswith("ray::StageActor.process"):
                continue
            with open(f"/proc/{pid}/maps") as f:
                if "/lap/" in f.read():
                    return pid
        except (OSError, ValueError, IndexError):
            continue
    return None


def _frames(root) -> list[tuple]:
    return connect(root).execute(
        "SELECT clip_id, track_id, frame_idx, box, box_score, body_keypoints FROM frames "
        "ORDER BY clip_id, track_id, frame_idx"
    ).fetchall()


def _clips(root) -> list[tuple]:
    return connect(root).execute(
        "SELECT clip_id, source, shot_idx, start_s, end_s, num_frames, num_people, width, height, fps "
        "FROM clips ORDER BY clip_id"
    ).fetchall()


def assert_same_output(a, b, clip_ids=None):
    """Roots ``a`` and ``b`` hold the same clips and frames (only ``clip_ids`` when given)."""
    keep = (lambda rows: [r for r in rows if r[0] in clip_ids]) if clip_ids is not None else (lambda rows: rows)
    assert keep(_clips(a)) == keep(_clips(b))
    fa, fb = keep(_frames(a)), keep(_frames(b))
    assert len(fa) > 0
    assert [r[:3] for r in fa] == [r[:3] for r in fb]  # same (clip, track, frame) keys in order
    np.testing.assert_allclose(np.array([r[3] for r in fa]), np.array([r[3] for r in fb]), atol=1e-3)
    np.testing.assert_allclose(np.array([r[4] for r in fa]), np.array([r[4] for r in fb]), atol=1e-4)
    np.testing.assert_allclose(np.array([r[5] for r in fa]), np.array([r[5] for r in fb]), atol=1e-3)


def test_two_nodes_place_actors_on_both_and_match_one_node(cluster, sources, reference, tmp_path):
    from talkset.flows.collect import collect

    summary = collect(sources=sources, root=str(tmp_path), config=FAST, ray_address=cluster.address, run_id="two-node")
    node_ids = {n.node_id for n in [cluster.head_node, *cluster.worker_nodes]}
    assert summary["ray"]["nodes"] == 2
    assert set(summary["nodes"]) == node_ids  # stage actors ran on both nodes
    assert summary["stages"]["people"]["actors"] == 2 and summary["stages"]["people"]["items"] == 2
    # GPU placement without a GPU: both nodes declare one, so each people actor asks for a quarter
    # of one, SPREAD puts one on each node, and inside the actor YOLO finds no CUDA and runs on CPU
    people = summary["stages"]["people"]
    assert people["gpus_per_actor"] == 0.25
    assert set(people["nodes"]) == node_ids
    assert people["devices"] == ["cpu"]
    assert summary["clips_kept"] == 2 and summary["failures"] == 0
    clips = _clips(tmp_path)
    assert [r[6] for r in clips] == [2, 2] and [r[5] for r in clips] == [100, 100]
    assert_same_output(tmp_path, reference)


def test_actor_killed_mid_clip_loses_and_duplicates_nothing(cluster, sources, reference, tmp_path):
    from talkset.flows.collect import collect

    src = sources[0]
    cfg = {**FAST, "concurrency": {}, "max_task_retries": 2}  # one actor per stage
    out: dict = {}

    def run():
        try:
            out["summary"] = collect(sources=[src], root=str(tmp_path), config=cfg, ray_address=cluster.address, run_id="kill-1")
        except BaseException as exc:  # surfaced by the assertion below
            out["error"] = exc

    th = threading.Thread(target=run, daemon=True)
    th.start()
    killed = None
    deadline = time.time() + 300
    while th.is_alive() and time.time() < deadline and killed is None:
        pid = people_actor_busy(cluster)
        if pid is not None:
            time.sleep(0.5)  # well inside the clip: tracking 100 frames takes seconds
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.1)
    th.join(600)
    assert "error" not in out, out.get("error")
    assert killed is not None, "the people actor was never seen processing"
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    summary = out["summary"]
    con = connect(tmp_path)
    committed = [r[0] for r in con.execute("SELECT clip_id FROM clips").fetchall()]
    failures = con.execute("SELECT stage, item, error FROM failures").fetchall()
    if committed:  # Ray restarted the actor and retried the call (max_task_retries)
        assert failures == [] and summary["clips_kept"] == 1
    else:  # retries ran out: the clip is a failures row naming the stage, and a re-run completes it
        assert [(s, "actor died" in e) for s, _, e in failures] == [("people", True)], failures
        summary = collect(sources=[src], root=str(tmp_path), config=cfg, ray_address=cluster.address, run_id="kill-2")
        assert summary["clips_kept"] == 1
        assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 1
    dup = con.execute(
        "SELECT count(*) FROM (SELECT clip_id, track_id, frame_idx FROM frames GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]
    assert dup == 0
    n_parquet = len(list((tmp_path / "tables" / "frames").rglob("*.parquet")))
    assert n_parquet == 1
    (clip_id,) = con.execute("SELECT clip_id FROM clips").fetchone()
    assert_same_output(tmp_path, reference, clip_ids={clip_id})  # same rows as the undisturbed run


def test_long_source_list_keeps_sources_in_flight_bounded(cluster, sources, tmp_path):
    """30 sources (20 hard links of a 1.2 s real cut, 10 missing files) with 2 in flight."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from talkset.flows.collect import collect

    short = cut(Path(sources[1]), tmp_path / "short.mp4", 0.0, 1.2)
    srcs = []
    for i in range(30):
        if i % 3 == 2:
            srcs.append(str(tmp_path / f"missing_{i:02d}.mp4"))
        else:
            p = tmp_path / f"short_{i:02d}.mp4"
            os.link(short, p)  # a distinct path (and source id), the same real footage
            srcs.append(str(p))
    cfg = {"annotate": False, "max_sources_in_flight": 2, "max_shots_in_flight": 1}
    state = collect(sources=srcs, root=str(tmp_path / "root"), config=cfg, ray_address=cluster.address,
                    run_id="many", return_state=True)
    summary = state.result()
    assert summary["sources"] == 30 and len(summary["per_source"]) == 30
    assert summary["failures"] == 10  # the missing files, each a failures row
    assert summary["shots"] == 20 and summary["clips_kept"] == 0  # 1.2 s shots are too short

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    spans = sorted((r.start_time, r.end_time) for r in runs if r.name.startswith("source:"))
    assert len(spans) == 30 and all(s and e for s, e in spans)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    in_flight = peak = 0
    for _, d in events:
        in_flight += d
        peak = max(peak, in_flight)
    assert peak == 2  # bounded by max_sources_in_flight, and the bound is used


def test_gpu_asks_follow_the_backend_and_too_many_stop_at_once(tmp_path):
    """A 1-node Ray that declares one GPU: YOLO and Light-ASD actors ask for a share of it, MediaPipe
    pose asks for none; actors asking for more GPUs than the cluster has stop the run at once."""
    import ray

    from talkset.config import CollectConfig
    from talkset.flows.collect import build_stages, start_pools

    if ray.is_initialized():  # the driver may still be connected to this module's 2-node cluster
        ray.shutdown()
    ray.init(address="local", num_cpus=24, num_gpus=1, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        cfg = CollectConfig(root=str(tmp_path), annotate=True, concurrency={"people": 8})
        stages = build_stages(cfg, "gpu-ask")
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"ask for 2\.25 GPUs but the Ray cluster has 1"):
            start_pools(cfg, stages)  # people 8 x 0.25 + speaking 0.25; pose (mediapipe) 0
        assert time.perf_counter() - t0 < 5  # stops at once, no actor left pending
        cfg = CollectConfig(root=str(tmp_path), annotate=True)
        pools, info = start_pools(cfg, build_stages(cfg, "gpu-ask"))
        try:
            assert info["gpus"] == 1 and not info["started"]
            asked = {name: p.num_gpus for name, p in pools.items()}
            assert asked["people"] == 0.25 and asked["speaking"] == 0.25
            assert asked["pose"] == 0 and asked["faces"] == 0 and asked["clip"] == 0
            # CPUs: YOLO on its GPU share needs no ONNX Runtime threads; MediaPipe pose runs 2 tracks at once
            cpus = {name: p.num_cpus for name, p in pools.items()}
            assert cpus["people"] == 1 and cpus["pose"] == 2 and cpus["speaking"] == 1
        finally:
            for p in pools.values():
                p.shutdown()
    finally:
        ray.shutdown()

"""Integration: the ``collect`` deployment on a real Prefect server with a process worker.

Starts ``prefect server`` on 127.0.0.1 (free port, SQLite under a temp PREFECT_HOME) through
:mod:`talkset.flows.server`, creates the ``talkset-process`` work pool and the ``collect`` deployment
from ``prefect.yaml`` (``talkset deploy``), starts ``prefect worker start --pool talkset-process``,
runs ``prefect deployment run collect/collect --watch`` on 4 s of real two-person footage and
checks the flow run's final state on the server and the rows written. Everything it started
(worker, its flow-run processes and their Ray, server) is stopped in the fixture teardown.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, clip, cut

from talkset.flows import server
from talkset.storage.catalog import connect

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory):
    """A running server + deployments + process worker; yields (state dir, api url)."""
    state = tmp_path_factory.mktemp("prefect-home")
    try:
        info = server.start_server(state, port=server.free_port(), ui=False)
        names = server.deploy(state, names=["collect"])
        server.start_worker(state, query_seconds=2)
        yield state, info.api_url, names
    finally:
        server.stop_server(state)  # stops the worker (and its flow-run processes) first
        st = server.server_status(state)
        assert not st["running"], f"prefect server still running: {st}"


def test_server_cli_status_and_deployment_list(prefect_stack):
    state, api_url, names = prefect_stack
    assert names == ["collect/collect"]
    proc = subprocess.run(
        [sys.executable, "-m", "talkset.cli", "server", "status", "--state-dir", str(state)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    st = json.loads(proc.stdout)
    assert st["healthy"] and st["api_url"] == api_url
    assert st["worker"]["running"] and st["worker"]["pool"] == "talkset-process"
    dep = server._post(api_url, "/deployments/filter", {})[0]
    assert dep["work_pool_name"] == "talkset-process"
    assert dep["schedules"] == []  # schedules off by default
    assert dep["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    assert set(dep["parameters"]) == {"sources", "root", "sources_file", "config", "ray_address", "run_id"}


def test_collect_deployment_run_completes_and_writes_rows(prefect_stack, tmp_path):
    state, api_url, _ = prefect_stack
    src = cut(clip("clearervoice_tse_001.avi"), tmp_path / "debate_4s.mp4", 0.0, 4.0)
    root = tmp_path / "root"
    params = {"sources": [str(src)], "root": str(root), "config": {"annotate": False}, "run_id": "deploy-test"}
    proc = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deployment", "run", "collect/collect",
         "--params", json.dumps(params), "--watch", "--watch-timeout", "600"],
        env=server.prefect_env(state, api_url), capture_output=True, text=True, cwd=REPO, timeout=700,
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert m, f"no flow run id in the CLI output:\n{out[-3000:]}"
    run = server.flow_run(api_url, m.group(1))
    log = (state / "worker.log").read_text(errors="replace")[-4000:]
    assert run["state_type"] == "COMPLETED", f"{run['state_name']}: {out[-2000:]}\nworker log:\n{log}"
    assert proc.returncode == 0, out[-2000:]
    assert run["parameters"]["config"] == {"annotate": False}

    # what the run wrote
    con = connect(root)
    clips = con.execute("SELECT clip_id, num_people, num_frames, fps, duration_s, run_id FROM clips").fetchall()
    assert len(clips) == 1, clips
    clip_id, num_people, num_frames, fps, duration_s, run_id = clips[0]
    assert (num_people, fps, run_id) == (2, 25.0, "deploy-test")
    assert duration_s == pytest.approx(4.0, abs=0.05)
    assert num_frames == 100
    per_track = con.execute(
        "SELECT track_id, count(*), count(DISTINCT frame_idx), min(frame_idx), max(frame_idx) "
        "FROM frames GROUP BY track_id ORDER BY track_id"
    ).fetchall()
    assert len(per_track) == 2, per_track
    for _tid, n, n_distinct, lo, hi in per_track:
        assert n == n_distinct  # one row per (track, frame)
        assert 0 <= lo and hi < num_frames
        assert n >= 0.9 * num_frames  # both debaters are on screen the whole time
    assert con.execute("SELECT count(*) FROM failures").fetchone()[0] == 0
    summary = json.loads((root / "_runs" / "deploy-test.json").read_text())
    assert summary["clips_kept"] == 1 and summary["stages"]["people"]["items"] == 1

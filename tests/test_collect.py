"""The collect flow end to end: real Prefect (ephemeral API), real Ray (local), real ffmpeg,
PySceneDetect, YOLO + ByteTrack, Parquet and DuckDB, on real footage from ../shared/data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, clip

from talkset.media import run_ffmpeg
from talkset.storage.catalog import connect

FAST = {"annotate": False}
pytestmark = pytest.mark.usefixtures("prefect_api")


def _sql(root, q):
    return connect(root).execute(q).fetchall()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(50_000))
    one_frame = d / "one_frame.mp4"
    run_ffmpeg(["-i", str(clip("visualvoice_noisy_restaurant.mp4")), "-frames:v", "1", "-t", "0.04",
                "-c:v", "libx264", "-c:a", "aac", str(one_frame)], "one-frame fixture")
    nobody = d / "nobody.mp4"  # real nature footage (no people) with a sound track added
    run_ffmpeg(["-i", str(clip("psd_testvideo.mp4")), "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000",
                "-t", "12", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
                "-shortest", str(nobody)], "no-people fixture")
    return {"corrupt": corrupt, "one_frame": one_frame, "nobody": nobody,
            "no_audio": clip("psd_goldeneye-vfr-drop3.mp4"), "bad_url": "http://127.0.0.1:9/missing.mp4",
            "missing": d / "does-not-exist.mp4"}


def test_bad_inputs_become_failures_and_run_goes_on(tmp_path, bad_inputs):
    from talkset.flows.collect import collect

    sources = [str(bad_inputs[k]) for k in ("corrupt", "one_frame", "nobody", "no_audio", "bad_url", "missing")]
    sources.append(str(clip("visualvoice_noisy_restaurant.mp4")))  # 1 person: rejected shot
    summary = collect(sources=sources, root=str(tmp_path), config={**FAST, "download_retries": 1})
    assert summary["sources"] == 7
    fails = dict(_sql(tmp_path, "SELECT item, stage || ': ' || error FROM failures"))
    by_item = {Path(k).name if not k.startswith("http") else k: v for k, v in fails.items()}
    assert "not a video" in by_item["corrupt.mp4"]
    assert "audio" in by_item["psd_goldeneye-vfr-drop3.mp4"]
    assert by_item["http://127.0.0.1:9/missing.mp4"].startswith("download")
    assert "not found" in by_item["does-not-exist.mp4"]
    shots = _sql(tmp_path, "SELECT source, kept, reason FROM shots")
    reasons = [r for _, _, r in shots]
    assert not any(k for _, k, _ in shots)
    assert "people=1" in reasons  # the restaurant talker
    assert "too_short" in reasons  # the one-frame video
    assert any(r == "people=0" or r.startswith("too_short") for r in reasons)  # nature shots
    assert _sql(tmp_path, "SELECT count(*) FROM clips") == [(0,)]
    assert summary["failures"] == 4


def test_killed_run_resumes_without_duplicates(tmp_path):
    """Kill a real `talkset collect` process after its first clip is committed; re-run; compare."""
    srcs = [str(clip("visualvoice_interview.mp4")), str(clip("clearervoice_tse_001.avi"))]
    cfg = tmp_path / "fast.yaml"
    cfg.write_text("annotate: false\nmax_sources_in_flight: 1\n")
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "talkset.cli", "collect", *srcs, "--root", str(root), "--config", str(cfg)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 900
        clips_dir = root / "tables" / "clips"
        while time.time() < deadline and proc.poll() is None:
            if clips_dir.is_dir() and any(clips_dir.rglob("*.parquet")):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "collect finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    first = sorted(p.name for p in (root / "tables" / "clips").rglob("*.parquet"))
    assert len(first) == 1
    mtime = next((root / "tables" / "clips").rglob("*.parquet")).stat().st_mtime
    out = subprocess.run(cmd + ["--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("{\n"):])
    assert summary["clips_kept"] == 2 and summary["clips_resumed"] == 1
    assert next(p for p in (root / "tables" / "clips").rglob(first[0])).stat().st_mtime == mtime  # not redone
    assert _sql(root, "SELECT count(*) FROM clips") == [(2,)]
    dup = _sql(root, "SELECT count(*) FROM (SELECT clip_id, track_id, frame_idx, count(*) c FROM frames GROUP BY ALL HAVING c > 1)")
    assert dup == [(0,)]
    per_clip = _sql(root, "SELECT c.clip_id, c.num_frames, count(DISTINCT f.track_id), count(*) FROM clips c JOIN frames f USING (clip_id) GROUP BY ALL")
    for _, n_frames, tracks, rows in per_clip:
        assert tracks == 2 and rows > 1.6 * n_frames  # two people over (nearly) every frame
    # a third run is a no-op
    out = subprocess.run(cmd + ["--json"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    summary = json.loads(out.stdout[out.stdout.index("{\n"):])
    assert summary["sources_skipped"] == 2
    assert _sql(root, "SELECT count(*) FROM frames") == [(sum(r[3] for r in per_clip),)]

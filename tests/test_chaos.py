"""kill -9 chaos, short (issue 12 §3): three SIGKILLs of a real ``talkset collect`` (the driver, a stage
actor, the raylet) in one dataset root, resumed to completion and compared with an uninterrupted
run (benchmarks/chaos.py does 20 seeded runs); and writes that fail for lack of space
(``RLIMIT_FSIZE``) end as a clear error with nothing torn.

Cost, measured on the 2-core VM while seven other jobs ran (load average 40-50): 9 min 47 s (480 s
for the five collect processes: reference, three killed, one resume; 100 s for the Prefect test
server). Quiet-machine cost not measured; it is bounded by five collect starts (Ray 3-7 s each).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import chaos

SHORT_INPUTS = (("visualvoice_interview.mp4", 2.0, 1.5), ("dvscripts_blackjournal.mp4", 20.0, 1.5))
FAST = {"min_shot_s": 1.0, "track_imgsz": 320}


def test_three_kills_leave_no_duplicate_no_half_shard_and_resume_equal(tmp_path, prefect_api):
    """One root: the driver killed, then (resumed) a stage actor, then (resumed) the raylet, then a
    last resume; every kill moment seeded. The collect processes share the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    lines: list[str] = []
    s = chaos.chaos(tmp_path, runs=3, seed=12, same_root=True, targets=["driver", "actor", "raylet"],
                    inputs=SHORT_INPUTS, config=FAST, env_extra={"PREFECT_API_URL": PREFECT_API_URL.value()},
                    echo=lines.append)  # fmt: skip
    report = "\n".join(lines)
    print(report)  # shown with -s: what was killed when, per run
    ref = s["reference_tables"]
    assert ref["clips"][0] == 2 and ref["shots"][0] >= 2 and ref["failures"][0] == 1 and ref["frames"][0] > 60, report
    assert s["kills"]["driver"] + s["kills"]["actor"] + s["kills"]["raylet"] + s["not_killed"] == 3
    assert s["kills"]["driver"] == 1, report  # the driver is always there to be killed
    assert s["duplicates"] == 0 and s["half_shards"] == 0 and s["half_clips"] == 0, report
    assert s["resumed"] == 1 and s["resumed_equal"] == 1, report


_WRITER = r"""
import json, sys
import numpy as np
from pathlib import Path
from talkset.storage.root import DatasetRoot
from talkset.stages.base import StageError
from talkset.stages.clip import ClipStage
from talkset.items import Clip, Shot, Source

root = DatasetRoot(sys.argv[1]); src = sys.argv[2]
out = {}
rows = [{"clip_id": "c", "track_id": 0, "frame_idx": i, "time_s": float(x)}
        for i, x in enumerate(np.random.default_rng(0).random(30000))]
try:
    root.write_shard("frames", "src", "big", rows)
    out["shard"] = "written"
except OSError as exc:
    out["shard"] = f"{type(exc).__name__}: {exc}"
video = Source(url=src, source_id="src", video_path=src)
clip = Clip(source=video, shot=Shot("src", 0, 0, 0, 20.0, 24.0), clip_id="src-s0000", clip_fps=25.0)
try:
    ClipStage(root=str(root.root)).process(clip)
    out["clip"] = "written"
except StageError as exc:
    out["clip"] = exc.reason
print(json.dumps(out))
"""


def _limited(limit: int):
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_no_space_is_a_clear_error_with_nothing_torn(tmp_path):
    """A 64 kB file-size limit on the process: the shard writer (pyarrow) gets EFBIG (CPython ignores
    SIGXFSZ) and removes its temporary file; ffmpeg (whose SIGXFSZ ``subprocess`` restores) is killed
    by SIGXFSZ and the clip stage says so and removes its temporary mp4 / wav."""
    from conftest import clip

    root = tmp_path / "root"
    env = {**chaos.run_env()}
    out = subprocess.run(
        [sys.executable, "-c", _WRITER, str(root), str(clip("dvscripts_blackjournal.mp4"))], check=False, env=env, cwd=REPO,
        capture_output=True, text=True, timeout=300, preexec_fn=_limited(64_000),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "File too large" in res["shard"] and res["shard"].startswith("OSError"), res
    assert "ffmpeg failed" in res["clip"] and "SIGXFSZ" in res["clip"] and "file-size limit" in res["clip"], res
    assert _files(root) == []  # no shard, no clip, no temporary file left behind

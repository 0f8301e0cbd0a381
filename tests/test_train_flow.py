"""The ``train`` and ``evaluate`` flows end to end on a small real dataset root: real Prefect,
real Ray Train (2 CPU workers, gloo DDP), the tiny CovOG, a real SIGKILL mid-run and a resume
from the latest checkpoint, then SSIM / PSNR per held-out clip with FVD skipped (no I3D here).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from talkset import env

env.configure(threads=1)

try:
    from test_training_dataset import build_small_root
except ImportError:  # tests imported as a package
    from tests.test_training_dataset import build_small_root

REPO = Path(__file__).resolve().parent.parent
STAGE1, STAGE2, EVERY = 80, 40, 20
KILL_AT = 40  # kill once a checkpoint at this step or later is on disk


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    return build_small_root(tmp_path_factory.getbasetemp() / "talkset-small-root")


def _train_cmd(root: Path, run_dir: Path) -> list[str]:
    code = (
        "import json, sys\n"
        "from talkset.flows.train import train\n"
        f"s = train(root={str(root)!r}, config=dict(model='tiny', stage1_steps={STAGE1}, stage2_steps={STAGE2}, "
        f"num_workers=2, checkpoint_every={EVERY}, audio_model='logmel', run_dir={str(run_dir)!r}), resume=True)\n"
        "print('SUMMARY ' + json.dumps(s, default=str), flush=True)\n"
    )
    return [sys.executable, "-c", code]


def _checkpoint_steps(run_path: Path) -> list[int]:
    steps = []
    for m in run_path.glob("checkpoint_*/meta.json"):
        try:
            steps.append(json.loads(m.read_text())["step"])
        except (json.JSONDecodeError, KeyError, OSError):
            pass  # being written
    return sorted(steps)


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout.split("\n")
    return [int(a) for a, b in (line.split() for line in out if line.strip()) if int(b) == sid]


def test_train_killed_resumes_then_evaluate(small_root, tmp_path):
    run_dir = tmp_path / "runs"
    run_path = run_dir / "covog-tiny"
    child_env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "OMP_NUM_THREADS": "1"}
    log_a = open(tmp_path / "run_a.log", "w")
    a = subprocess.Popen(_train_cmd(small_root, run_dir), cwd=REPO, env=child_env, stdout=log_a,
                         stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and a.poll() is None:
        if any(s >= KILL_AT for s in _checkpoint_steps(run_path)):
            break
        time.sleep(0.5)
    assert a.poll() is None, f"training ended before the kill: {(tmp_path / 'run_a.log').read_text()[-3000:]}"
    on_disk = _checkpoint_steps(run_path)
    os.killpg(a.pid, signal.SIGKILL)  # the flow, its Prefect API and its local Ray cluster
    assert a.wait(30) == -signal.SIGKILL
    for _ in range(60):  # every process of that session is gone (no orphaned Ray workers)
        if not _session_pids(a.pid):
            break
        time.sleep(0.5)
    assert not _session_pids(a.pid)
    assert "SUMMARY" not in (tmp_path / "run_a.log").read_text()
    assert max(on_disk) >= KILL_AT and max(on_disk) < STAGE1 + STAGE2

    b = subprocess.run(_train_cmd(small_root, run_dir), cwd=REPO, env=child_env, capture_output=True, text=True,
                       timeout=600)
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    s = json.loads(next(line for line in b.stdout.splitlines() if line.startswith("SUMMARY "))[8:])
    # resumed from a checkpoint that was on disk at the kill (not from 0), and finished the run
    assert s["resumed_from"] in on_disk and s["resumed_from"] >= EVERY, (s["resumed_from"], on_disk)
    assert s["steps"] == STAGE1 + STAGE2
    hist = s["history"]
    assert [h[0] for h in hist] == list(range(1, STAGE1 + STAGE2 + 1))  # every step once, across the kill
    assert [h[1] for h in hist] == [1] * STAGE1 + [2] * STAGE2
    losses = [h[2] for h in hist]
    assert all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.9 * first, (first, last)
    print(f"\ntrain: resumed at step {s['resumed_from']} (checkpoints at kill {on_disk}); "
          f"loss first-20 mean {first:.4f} -> last-20 mean {last:.4f}; {s['seconds_per_step']:.3f} s/step")

    from talkset.flows.evaluate import evaluate
    from talkset.training.splits import read_splits

    missing_i3d = tmp_path / "i3d_torchscript.pt"
    ev = evaluate(str(small_root), str(run_path), config=dict(split="test", i3d_path=str(missing_i3d), num_steps=4, max_frames=8))
    held_out = sorted(c for c, sp in read_splits(small_root).items() if sp != "train")
    assert sorted(r["clip_id"] for r in ev["clips"]) == held_out and len(held_out) == 3
    assert ev["step"] == STAGE1 + STAGE2
    for r in ev["clips"]:
        assert r["frames"] == 8 and r["fvd"] is None and r["ablation"] == "full"
        # after 120 tiny steps the samples are blurry (measured PSNR 9.4-10.5 dB, SSIM 0.03-0.08);
        # saturated noise, what the untrained model drew, scored ~3.5 dB
        assert -1.0 < r["ssim"] < 0.99 and 5.0 < r["psnr"] < 40.0, r
    assert ev["fvd"] is None and ev["fvd_message"] == f"FVD skipped: no I3D at {missing_i3d}"
    from talkset.storage.catalog import connect

    rows = connect(small_root).execute(
        f"SELECT clip_id, split, ssim, psnr, fvd FROM read_parquet('{small_root}/tables/eval/**/{ev['eval_id']}.parquet', "
        "hive_partitioning=true) ORDER BY clip_id"
    ).fetchall()
    assert [r[0] for r in rows] == held_out and all(r[4] is None for r in rows)
    assert {r[1] for r in rows} <= {"test_easy", "test_hard"}
    print("evaluate: " + ", ".join(f"{r[0]} ({r[1]}) SSIM {r[2]:.4f} PSNR {r[3]:.2f}" for r in rows))
    # an ablation is its own training run: evaluating this checkpoint as --no-mpe is refused
    with pytest.raises(ValueError, match="trained with use_mpe=True"):
        evaluate(str(small_root), str(run_path), config=dict(use_mpe=False, max_frames=4, num_steps=1))

"""kill -9 chaos for ``collect`` (issue 12 §3): seeded SIGKILLs, resume, compare with an uninterrupted run.

    python benchmarks/chaos.py [--runs 20] [--seed 0] [--work DIR] [--annotate]

Inputs: three short clips cut from ../shared/data/clips (visualvoice_interview 2-6 s, clearervoice_tse_001
0-4 s, dvscripts_blackjournal 20-24 s; two people each) and one text file named ``.mp4`` (a ``failures``
row), collected with ``talkset collect`` (``annotate: false`` unless ``--annotate``) as a real
subprocess: Prefect, a local Ray, ffmpeg, Parquet.

1. A reference root: one uninterrupted run; its wall time ``T`` is the window for the kills.
2. ``--runs`` times, in a fresh root each: start collect, wait a seeded random moment in
   ``[0.05 T, 0.9 T]``, SIGKILL a seeded target:

   - ``driver``: the ``talkset collect`` process (its Ray processes are SIGKILLed one second later:
     the machine lost the job);
   - ``actor``: one of the ``ray::StageActor`` worker processes (Ray restarts it and retries the
     call; the run may finish by itself);
   - ``raylet``: the local Ray node's raylet (the whole node dies under the driver).

   After the kill (and after the driver exits, or ``max(180 s, 1.5 T)`` for an actor kill, 30 s for a raylet
   kill, then every process of the run is SIGKILLed):
   the root is checked (below); then collect is run again to completion, checked again, and its
   tables are compared with the reference.
3. Checks: *duplicates* (rows sharing a key: ``clips`` clip_id, ``frames`` clip_id + track_id +
   frame_idx, ``shots`` source + shot_idx, ``failures`` source + stage + item), *half shards* (a
   ``*.parquet`` under ``tables/`` that Parquet cannot read, or a temporary name that a glob would
   match) and *half clips* (a ``clips`` row whose mp4 / wav is missing or short). *Equal*: row count
   and a SHA-256 per table over the rows the catalog shows, ignoring ``run_id`` / ``created_at`` /
   ``time``, with the root's path replaced and floats rounded to 5 significant digits.

Prints one line per run and a summary: runs, kills by target, duplicates found, half shards found,
half clips found, resumed runs equal to the reference. Exit status 1 if any check failed.
tests/test_chaos.py runs :func:`chaos` with 3 kills (one per target) in one root.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TALKSET_SHARED", REPO.parent / "shared"))
CLIPS = SHARED / "data" / "clips"
INPUTS = (("visualvoice_interview.mp4", 2.0, 4.0), ("clearervoice_tse_001.avi", 0.0, 4.0),
          ("dvscripts_blackjournal.mp4", 20.0, 4.0))  # fmt: skip
TARGETS = ("driver", "actor", "raylet")
KEYS = {
    "clips": ("clip_id",),
    "frames": ("clip_id", "track_id", "frame_idx"),
    "shots": ("source", "shot_idx"),
    "failures": ("source", "stage", "item"),
}
IGNORED = {"run_id", "created_at", "time"}

sys.path.insert(0, str(REPO))


def make_inputs(folder: Path, inputs=INPUTS) -> list[str]:
    """The chaos inputs (cut and re-encoded with ffmpeg), as source paths."""
    from talkset.media import run_ffmpeg

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, start, dur in inputs:
        dst = folder / f"{Path(name).stem}_{start:g}s.mp4"
        if not dst.is_file():
            run_ffmpeg(["-ss", f"{start}", "-i", str(CLIPS / name), "-t", f"{dur}", "-vf", "scale=-2:360",
                        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-c:a", "aac", str(dst)], name)  # fmt: skip
        out.append(str(dst))
    bad = folder / "broken.mp4"
    bad.write_text("not a video\n")
    out.append(str(bad))
    return out


def collect_cmd(sources: list[str], root: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "talkset.cli", "collect", *sources, "--root", str(root), "--config", str(config)]


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", OMP_NUM_THREADS="1")  # fmt: skip
    return env


# -- checks ------------------------------------------------------------------------------------
def half_shards(root: Path) -> list[str]:
    """``*.parquet`` files under ``tables/`` that are temporary or unreadable."""
    import pyarrow.parquet as pq

    from talkset.storage.root import TMP_PREFIX

    bad = []
    for p in sorted((root / "tables").rglob("*.parquet")):
        if p.name.startswith(TMP_PREFIX):
            bad.append(f"{p} (temporary name matches *.parquet)")
            continue
        try:
            pq.read_table(p)
        except (OSError, ValueError) as exc:  # pyarrow: ArrowIOError / ArrowInvalid
            bad.append(f"{p} ({type(exc).__name__}: {exc})")
    return bad


def _catalog_rows(root: Path, table: str) -> tuple[list[str], list[tuple]]:
    from talkset.storage.catalog import connect

    cur = connect(root).execute(f"SELECT * FROM {table}")
    return [d[0] for d in cur.description], cur.fetchall()


def duplicates(root: Path) -> dict[str, int]:
    """Extra rows per table (rows minus distinct keys), as the catalog shows them."""
    out = {}
    for table, key in KEYS.items():
        cols, rows = _catalog_rows(root, table)
        idx = [cols.index(k) for k in key]
        keys = [tuple(r[i] for i in idx) for r in rows]
        out[table] = len(keys) - len(set(keys))
    return out


def half_clips(root: Path) -> list[str]:
    """``clips`` rows whose media are missing or do not hold ``num_frames`` frames / the WAV."""
    from talkset.media import MediaError, probe
    from talkset.stages.clip import wav_samples

    cols, rows = _catalog_rows(root, "clips")
    bad = []
    for r in rows:
        row = dict(zip(cols, r))
        mp4, wav = root / row["video_path"], root / row["audio_path"]
        try:
            n = probe(mp4).num_frames
        except MediaError as exc:
            bad.append(f"{row['clip_id']}: {exc}")
            continue
        ws = wav_samples(wav)
        if n != row["num_frames"] or ws is None or ws[0] != round(row["duration_s"] * 16000):
            bad.append(f"{row['clip_id']}: mp4 {n}/{row['num_frames']} frames, wav {ws}")
    return bad


def _norm(v, root: str):
    if isinstance(v, float):
        return float(f"{v:.5g}")
    if isinstance(v, str):
        return v.replace(root, "<root>")
    if isinstance(v, (list, tuple)):
        return [_norm(x, root) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x, root) for k, x in sorted(v.items())}
    return v


def digest(root: Path) -> dict[str, tuple[int, str]]:
    """``{table: (rows, sha256)}`` over the catalog's rows, ignoring run ids and times."""
    out = {}
    for table in KEYS:
        cols, rows = _catalog_rows(root, table)
        keep = [i for i, c in enumerate(cols) if c not in IGNORED]
        norm = sorted(json.dumps([_norm(r[i], str(root)) for i in keep], default=str) for r in rows)
        out[table] = (len(rows), hashlib.sha256("\n".join(norm).encode()).hexdigest()[:16])
    return out


# -- killing -----------------------------------------------------------------------------------
def _tree(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _victim(target: str, driver: int):
    """The process to kill for ``target`` among the driver's descendants (None if not there yet)."""
    import psutil

    if target == "driver":
        return psutil.Process(driver)
    for p in _tree(driver):
        try:
            if target == "raylet" and p.name() == "raylet":
                return p
            if target == "actor" and any("StageActor" in part for part in p.cmdline()[:1]):
                return p
        except psutil.Error:
            continue
    return None


@dataclass
class RunResult:
    target: str
    delay_s: float
    killed: str = ""  # what was killed ("" when the run ended first)
    exit: int | None = None
    dups_after_kill: dict = field(default_factory=dict)
    half_after_kill: list = field(default_factory=list)
    dups_final: dict = field(default_factory=dict)
    half_final: list = field(default_factory=list)
    half_clips: list = field(default_factory=list)
    equal: bool | None = None
    seconds: float = 0.0


def killed_run(cmd: list[str], env: dict, log: Path, target: str, delay_s: float, rng: random.Random,
               grace_s: float = 180.0) -> tuple[str, int | None]:  # fmt: skip
    """Start ``cmd``, SIGKILL ``target`` after ``delay_s`` (actor / raylet: once one exists), wait
    for the driver (``grace_s``), then SIGKILL every process of the run. Returns (what was killed, exit)."""
    import psutil

    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=fh, stderr=fh, start_new_session=True)
    seen: dict[int, object] = {}
    killed = ""
    try:
        t0 = time.monotonic()
        while proc.poll() is None:
            for p in _tree(proc.pid):
                seen[p.pid] = p
            if time.monotonic() - t0 >= delay_s:
                v = _victim(target, proc.pid)
                if target != "driver" and v is not None:  # pick among the stage actors at random
                    cands = [p for p in _tree(proc.pid) if _is(target, p)]
                    v = rng.choice(cands) if cands else v
                if v is not None:
                    try:
                        killed = f"{target} pid {v.pid} ({v.name()}) at {time.monotonic() - t0:.1f} s"
                        v.send_signal(signal.SIGKILL)
                    except psutil.Error:
                        killed = ""
                        continue
                    break
            time.sleep(0.05)
        if killed and target == "driver":
            time.sleep(1.0)  # orphaned Ray processes may still be writing: then they die too
        try:
            proc.wait(timeout={"actor": grace_s, "raylet": min(grace_s, 30.0)}.get(target, 5) if killed else 5)
        except subprocess.TimeoutExpired:
            pass
    finally:
        for p in _tree(proc.pid) + list(seen.values()):
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    return killed, proc.returncode


def _is(target: str, p) -> bool:
    import psutil

    try:
        if target == "raylet":
            return p.name() == "raylet"
        return any("StageActor" in part for part in p.cmdline()[:1])
    except psutil.Error:
        return False


def full_run(cmd: list[str], env: dict, log: Path, timeout_s: float = 900) -> float:
    t0 = time.monotonic()
    with open(log, "ab") as fh:
        proc = subprocess.run(cmd, check=False, env=env, cwd=REPO, stdout=fh, stderr=fh, timeout=timeout_s, start_new_session=True)
    if proc.returncode != 0:
        raise RuntimeError(f"collect exited {proc.returncode}; see {log}")
    return time.monotonic() - t0


def chaos(work: Path, runs: int, seed: int, annotate: bool = False, same_root: bool = False,
          targets: list[str] | None = None, inputs=INPUTS, config: dict | None = None,
          env_extra: dict | None = None, echo=print) -> dict:  # fmt: skip
    """Run the experiment (module docstring). ``same_root``: every kill in one root (resumed once at
    the end) instead of a fresh root per run; ``targets``: the kill targets in order (default: seeded
    random); ``config``: collect settings over the defaults; ``env_extra``: environment of the collect
    processes (``PREFECT_API_URL`` of a running server spares each run the temporary server's start).
    Returns the summary dict."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    sources = make_inputs(work / "inputs", inputs)
    cfg = work / "config.yaml"
    settings = {"annotate": annotate, "max_task_retries": 2, "download_retries": 0, **(config or {})}
    cfg.write_text(json.dumps(settings))  # JSON is YAML
    env = {**run_env(), **(env_extra or {})}
    ref = work / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    t_ref = full_run(collect_cmd(sources, ref, cfg), env, work / "reference.log")
    want = digest(ref)
    echo(f"reference: {t_ref:.1f} s, tables {want}")
    results: list[RunResult] = []
    for i in range(runs):
        target = targets[i] if targets else rng.choice(TARGETS)
        delay = rng.uniform(0.05, 0.9) * t_ref
        root = work / ("chaos" if same_root else f"run{i:02d}")
        if not same_root:
            shutil.rmtree(root, ignore_errors=True)
        log = work / f"run{i:02d}.log"
        t0 = time.monotonic()
        r = RunResult(target=target, delay_s=delay)
        r.killed, r.exit = killed_run(collect_cmd(sources, root, cfg), env, log, target, delay, rng,
                                      grace_s=max(180.0, 1.5 * t_ref))  # fmt: skip
        if root.is_dir():
            r.dups_after_kill, r.half_after_kill = duplicates(root), half_shards(root)
        if not same_root or i == runs - 1:
            full_run(collect_cmd(sources, root, cfg), env, log)
            r.dups_final, r.half_final, r.half_clips = duplicates(root), half_shards(root), half_clips(root)
            got = digest(root)
            r.equal = got == want
            if not r.equal:
                echo(f"  run {i}: tables differ: {got} vs reference {want}")
        r.seconds = time.monotonic() - t0
        results.append(r)
        echo(f"run {i:2d}: {target:6s} {r.killed or 'not killed: the run ended first'}; exit {r.exit}; "
             f"after kill dups {sum(r.dups_after_kill.values())} half {len(r.half_after_kill)}; "
             f"final equal={r.equal} dups {sum(r.dups_final.values())} half {len(r.half_final)} "
             f"half clips {len(r.half_clips)}; {r.seconds:.1f} s")  # fmt: skip
    summary = {
        "runs": runs,
        "kills": {t: sum(1 for r in results if r.killed and r.target == t) for t in TARGETS},
        "not_killed": sum(1 for r in results if not r.killed),
        "duplicates": sum(sum(r.dups_after_kill.values()) + sum(r.dups_final.values()) for r in results),
        "half_shards": sum(len(r.half_after_kill) + len(r.half_final) for r in results),
        "half_clips": sum(len(r.half_clips) for r in results),
        "resumed_equal": sum(1 for r in results if r.equal),
        "resumed": sum(1 for r in results if r.equal is not None),
        "reference_s": round(t_ref, 1),
        "reference_tables": want,
        "details": [r.__dict__ for r in results],
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--annotate", action="store_true", help="run the annotation stages too (slower)")
    args = ap.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="talkset-chaos-"))
    try:
        s = chaos(work, args.runs, args.seed, annotate=args.annotate)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"runs {s['runs']} | kills by target {s['kills']} (not killed: {s['not_killed']}) | "
          f"duplicates found {s['duplicates']} | half shards found {s['half_shards']} | "
          f"half clips found {s['half_clips']} | resumed runs equal to the reference "
          f"{s['resumed_equal']}/{s['resumed']} | reference run {s['reference_s']} s")  # fmt: skip
    ok = s["duplicates"] == 0 and s["half_shards"] == 0 and s["half_clips"] == 0 and s["resumed_equal"] == s["resumed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

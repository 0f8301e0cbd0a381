"""Collection throughput, measured in ONE run and printed as ratios (not a test).

On the same source clips, one after another in this process:

1. ``decode``: ffmpeg decoding each clip alone (``ffmpeg -i X -f null -``): the ceiling.
2. ``naive``: the stages without Ray, one after another in one process, each stage first decoding
   the full source video again (as separate per-stage scripts do: every stage opens the video and
   reads all its frames), then doing its work by calling the same stage classes' ``process``,
   every shot tracked at the full rate (``filter_fps=0``), the stages in the order of the one
   pipeline declaration (:func:`talkset.flows.graph.clip_graph`), the networks in PyTorch as the
   seed runs them (``runtime="torch"``, one frame and one person at a time).
3. ``talkset 1-node``: the ``collect`` flow on a 1-node local Ray cluster.
4. ``talkset 2-node``: the ``collect`` flow on a 2-node local Ray cluster (``ray.cluster_utils``;
   both nodes share this machine's cores).

Printed: video-seconds per wall-second of each, talkset / naive, talkset / decode, 2-node / 1-node,
the whole chain's CPU-seconds per video-second and the share of the cores busy with the actors'
work, and per stage actor-seconds per video-second (from the run summary, compute inside the
actors) and CPU-seconds per video-second (naive pass: process + child CPU time around each stage).

``--edit`` adds a >= 60 s talk-show-like edit built with ffmpeg from the shared clips (:data:`EDIT`:
hard cuts between one-person close-ups, two-shots and split screens). ``--filter-only`` measures
the people stage per shot, full-rate filter against sparse-first (decisions, CPU seconds on rejected
shots). ``--memory N`` runs ``collect`` on N tiny generated sources and prints the driver's memory
held per finished source.

    python benchmarks/throughput.py                      # default clips, annotation if installed
    python benchmarks/throughput.py --annotate off --clips clearervoice_tse_001.avi
    python benchmarks/throughput.py --annotate on --edit --skip two-node    # the issue 15 figures
    python benchmarks/throughput.py --filter-only --clips dvscripts_blackjournal.mp4 --edit
    python benchmarks/throughput.py --memory 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from talkset import env  # noqa: E402

env.configure(threads=1)
os.environ.setdefault("TALKSET_WEIGHTS", str(REPO.parent / "shared" / "weights"))

CLIPS = REPO.parent / "shared" / "data" / "clips"
DEFAULT_CLIPS = ["visualvoice_interview.mp4", "clearervoice_tse_001.avi", "visualvoice_noisy_restaurant.mp4"]
ANNOTATION = ("pose", "faces", "speaking", "align")
# the talk-show-like edit (--edit): (clip, start s, duration s), hard cuts, all made 1280x720 25 fps
EDIT = [
    ("dvscripts_blackjournal.mp4", 0.5, 8.0),  # host close-up (1 person: rejected)
    ("dvscripts_blackjournal.mp4", 20.0, 12.0),  # two-shot
    ("visualvoice_noisy_restaurant.mp4", 0.0, 8.0),  # one person
    ("visualvoice_interview.mp4", 0.0, 12.0),  # split screen
    ("dvscripts_blackjournal.mp4", 3.0, 7.0),  # host close-up again
    ("clearervoice_tse_001.avi", 0.0, 8.0),  # split-screen debate
    ("dvscripts_blackjournal.mp4", 45.0, 12.0),  # two-shot
]


def annotation_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(f"talkset.stages.{m}") is not None for m in ANNOTATION)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
            f"no GPU, load average at start {load[0]:.1f}; Python {platform.python_version()}")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def decode_ceiling(paths: list[Path]) -> float:
    from talkset.media import ffmpeg_exe

    t0 = time.perf_counter()
    for p in paths:
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(p), "-f", "null", "-"],
                       check=True)
    return time.perf_counter() - t0


def full_decode(path: str) -> int:
    """Read every frame of ``path`` (BGR arrays, as a stage script would), return the count."""
    from talkset.media import iter_frames

    n = 0
    for _k, _t, _img in iter_frames(path):
        n += 1
    return n


def naive(paths: list[Path], root: Path, cfg_dict: dict) -> dict:
    """All stages in this process, sequentially, each stage decoding the full source first."""
    from talkset.config import CollectConfig
    from talkset.flows.collect import build_stages
    from talkset.flows.graph import clip_graph
    from talkset.items import Clip, Source, clip_id_for, source_id_for
    from talkset.stages.base import StageError

    # the seed's way: every shot tracked at the full rate (no sparse filter first), stages in sequence,
    # its networks in PyTorch (no ONNX Runtime), one frame / one person at a time
    cfg = CollectConfig.from_dict({**cfg_dict, "root": str(root), "filter_fps": 0, "parallel_stages": False,
                                   "runtime": "torch", "people_threads": 1, "pose_threads": 1})
    stages = build_stages(cfg, "naive")
    order = [n for n in clip_graph(stages).order if n != "people"]  # the one pipeline declaration
    cpu = {n: 0.0 for n in stages}
    wall = {n: 0.0 for n in stages}
    decode_s = 0.0
    t_setup = time.perf_counter()
    for st in stages.values():
        st.setup()
    setup_s = time.perf_counter() - t_setup
    clips = 0
    t0 = time.perf_counter()

    def run(name, item, source_path):
        nonlocal decode_s
        c0, w0 = _cpu(), time.perf_counter()
        if source_path and name not in ("download", "write"):
            d0 = time.perf_counter()
            full_decode(source_path)
            decode_s += time.perf_counter() - d0
        try:
            return stages[name].process(item)
        finally:
            cpu[name] += _cpu() - c0
            wall[name] += time.perf_counter() - w0

    for p in paths:
        src = str(p.resolve())
        try:
            video = run("download", Source(url=src, source_id=source_id_for(src)), None)
            video = run("shots", video, src)
        except StageError:
            continue
        for shot in video.shots:
            if shot.reason:
                continue
            item = Clip(source=video, shot=shot, clip_id=clip_id_for(video.source_id, shot.shot_idx), clip_fps=cfg.clip_fps)
            try:
                item = run("people", item, src)
                if not item.shot.kept:
                    continue
                for name in order:
                    item = run(name, item, src if name != "write" else None)
                clips += 1
            except StageError as exc:
                print(f"  naive: {item.clip_id}: {exc.reason}", file=sys.stderr)
    total = time.perf_counter() - t0
    return {"wall": total, "setup": setup_s, "cpu": cpu, "stage_wall": wall, "full_decode": decode_s, "clips": clips}


def build_edit(dst: Path) -> Path:
    """The talk-show-like edit (:data:`EDIT`): one-person close-ups, two-shots and split screens of
    the shared clips joined with hard cuts, 1280x720, 25 fps, 16 kHz audio, H.264 + AAC."""
    from talkset.media import run_ffmpeg

    args, parts = [], []
    for i, (name, start, dur) in enumerate(EDIT):
        args += ["-ss", f"{start}", "-t", f"{dur}", "-i", str(CLIPS / name)]
        parts.append(f"[{i}:v]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,"
                     f"setsar=1,fps=25,format=yuv420p[v{i}];[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}]")
    concat = "".join(f"[v{i}][a{i}]" for i in range(len(EDIT))) + f"concat=n={len(EDIT)}:v=1:a=1[v][a]"
    run_ffmpeg([*args, "-filter_complex", ";".join(parts) + ";" + concat, "-map", "[v]", "-map", "[a]",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-c:a", "aac", str(dst)], "talk-show edit")
    return dst


def filter_cost(paths: list[Path]) -> dict:
    """People stage per shot: the full-rate filter (``filter_fps=0``, today's way) against the sparse
    one, in this process: decisions and CPU seconds, and the totals on rejected shots."""
    from talkset.items import Clip, Source
    from talkset.media import probe
    from talkset.stages.people import PeopleStage
    from talkset.stages.shots import ShotsStage

    full, sparse, shots = PeopleStage(filter_fps=0), PeopleStage(), ShotsStage()
    full.setup()
    sparse.setup()
    rows = []
    for p in paths:
        pr = probe(p)
        src = Source(url=str(p), source_id=p.stem[:16], video_path=str(p), duration_s=pr.duration_s)
        for sh in shots.process(src).shots:
            if sh.reason:
                continue
            item = Clip(source=src, shot=sh, clip_id=f"{p.stem}-{sh.shot_idx}", clip_fps=25.0)
            c0 = time.process_time()
            a = full.process(item).shot
            c1 = time.process_time()
            b = sparse.process(item).shot  # sparse first, then full rate if it passes (final)
            c2 = time.process_time()
            d = sparse.decide(*sparse.track_shot(item, sparse.sparse_step(25.0)), item).shot  # the sparse pass alone
            rows.append({"clip": p.name, "shot": sh.shot_idx, "start_s": sh.start_s, "end_s": sh.end_s,
                         "full": (a.kept, a.reason, a.num_people), "final": (b.kept, b.reason, b.num_people),
                         "sparse": (d.kept, d.reason, d.num_people), "cpu_full": c1 - c0, "cpu_sparse": c2 - c1})
            r = rows[-1]
            print(f"  {p.name} shot {sh.shot_idx} {sh.start_s:.1f}-{sh.end_s:.1f} s: full rate {r['full']} "
                  f"{r['cpu_full']:.1f} CPU-s; sparse pass {r['sparse']}; sparse first -> final {r['final']} "
                  f"{r['cpu_sparse']:.1f} CPU-s", flush=True)
    rej = [r for r in rows if not r["full"][0]]
    out = {"rows": rows, "agree": all(r["full"][0] == r["sparse"][0] and r["full"][2] == r["sparse"][2] for r in rows),
           "rejected_cpu_full": sum(r["cpu_full"] for r in rej), "rejected_cpu_sparse": sum(r["cpu_sparse"] for r in rej)}
    print(f"filter: {len(rows)} shots, sparse pass agrees with the full rate: {out['agree']}; rejected shots ({len(rej)}): "
          f"{out['rejected_cpu_full']:.1f} CPU-s at full rate -> {out['rejected_cpu_sparse']:.1f} CPU-s sparse first "
          f"(x{out['rejected_cpu_sparse'] / max(out['rejected_cpu_full'], 1e-9):.3f})", flush=True)
    return out



def driver_memory(n: int, work: Path) -> dict:
    """``collect`` on ``n`` tiny generated sources (1 s, 160x120 test pattern + tone: one shot,
    too short to track): the driver's resident memory and its live Python objects (``gc``) against
    the number of finished sources (each finished source writes one ``shots`` shard). Returns the
    bytes and objects held per finished source (least-squares slopes over the second half of the
    run) and the samples."""
    import gc
    import threading

    import psutil

    from talkset.flows.collect import collect
    from talkset.media import run_ffmpeg

    tiny = work / "tiny.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-f", "lavfi", "-i",
                "sine=frequency=440:sample_rate=16000:duration=1", "-c:v", "libx264", "-preset", "ultrafast",
                "-c:a", "aac", "-shortest", str(tiny)], "tiny source")
    srcs = []
    for i in range(n):
        dst = work / "src" / f"tiny_{i:05d}.mp4"
        dst.parent.mkdir(exist_ok=True)
        os.link(tiny, dst)
        srcs.append(str(dst))
    root = work / "mem-root"
    shards = root / "tables" / "shots"
    proc = psutil.Process()
    samples: list[tuple[int, int]] = []
    objects: list[tuple[int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        k = 0
        while not stop.wait(0.5):
            done = sum(1 for _ in shards.rglob("*.parquet")) if shards.exists() else 0
            samples.append((done, proc.memory_info().rss))
            k += 1
            if k % 10 == 0:  # every ~5 s: counting the live objects takes ~0.1 s
                objects.append((done, len(gc.get_objects())))

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        summary = collect(sources=srcs, root=str(root), config={"annotate": False, "max_sources_in_flight": 4,
                                                                 "progress_every_s": 3600})
    finally:
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    import numpy as np

    def slope(pts: list[tuple[int, int]]) -> float:
        half = [(d, v) for d, v in pts if d >= n // 2]
        return float(np.polyfit([d for d, _ in half], [v for _, v in half], 1)[0]) if len({d for d, _ in half}) > 2 \
            else float("nan")

    out = {"sources": n, "wall": wall, "bytes_per_source": slope(samples), "objects_per_source": slope(objects),
           "rss_first": samples[0][1] if samples else 0, "rss_last": samples[-1][1] if samples else 0,
           "failures": summary["failures"],
           "actors": {k: (v.get("actors_min"), v.get("actors_max")) for k, v in summary["stages"].items()}}
    print(f"driver memory: {n} tiny sources in {wall:.0f} s; RSS {out['rss_first'] / 2**20:.0f} -> "
          f"{out['rss_last'] / 2**20:.0f} MiB; {out['bytes_per_source']:,.0f} bytes and "
          f"{out['objects_per_source']:.2f} live Python objects per finished source (second half, least squares); "
          f"actors per stage (min, max) {out['actors']}", flush=True)
    return out


def loopback_cluster(nodes: int, cpus_per_node: int):
    """A local Ray cluster of ``nodes`` nodes on 127.0.0.1 (Ray's multi-node IP lookup switched off)."""
    import ray._private.ray_constants as rc
    from ray.cluster_utils import Cluster

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    rc.ENABLE_RAY_CLUSTER = False
    # a private temp dir, so the cluster's address file never redirects other processes' ray.init()
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node, "include_dashboard": False})
    for _ in range(nodes - 1):
        c.add_node(num_cpus=cpus_per_node)
    c.wait_for_nodes()
    return c


def talkset_run(paths: list[Path], root: Path, cfg_dict: dict, nodes: int, cpus_per_node: int) -> dict:
    import ray

    from talkset.flows.collect import collect

    c = loopback_cluster(nodes, cpus_per_node)
    try:
        t0 = time.perf_counter()
        summary = collect(sources=[str(p) for p in paths], root=str(root), config=cfg_dict, ray_address=c.address,
                          run_id=f"bench-{nodes}node")
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
        c.shutdown()
        shutil.rmtree(os.environ.pop("RAY_TMPDIR"), ignore_errors=True)
    return {"wall": wall, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="*", default=DEFAULT_CLIPS, help="names under ../shared/data/clips or paths")
    ap.add_argument("--annotate", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--cpus-per-node", type=int, default=None,
                    help="logical CPUs Ray sees per node (default: what all stage actors ask for together)")
    ap.add_argument("--concurrency", default="people=2,clip=2", help="actors per stage, e.g. people=2,pose=2")
    ap.add_argument("--skip", nargs="*", default=[], choices=["naive", "two-node"])
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--edit", action="store_true", help="add the >= 60 s talk-show-like edit built from the shared clips")
    ap.add_argument("--memory", type=int, default=0, metavar="N",
                    help="only the driver's memory over N tiny generated sources (e.g. 1000)")
    ap.add_argument("--filter-only", action="store_true",
                    help="only the people filter per shot: full rate vs sparse first (decisions, CPU seconds)")
    args = ap.parse_args(argv)

    paths = [Path(c) if Path(c).is_file() else CLIPS / c for c in args.clips]
    edit_dir = Path(tempfile.mkdtemp(prefix="talkset-edit-"))
    if args.edit:
        paths.append(build_edit(edit_dir / "talkshow_edit.mp4"))
    if args.memory:
        print(f"machine: {machine()}")
        try:
            driver_memory(args.memory, edit_dir)
        finally:
            shutil.rmtree(edit_dir, ignore_errors=True)
        return 0
    if args.filter_only:
        print(f"machine: {machine()}")
        filter_cost(paths)
        shutil.rmtree(edit_dir, ignore_errors=True)
        return 0
    annotate = annotation_available() if args.annotate == "auto" else args.annotate == "on"
    conc = {k: int(v) for k, v in (kv.split("=") for kv in args.concurrency.split(",") if kv)}
    cfg = {"annotate": annotate, "concurrency": conc, "max_sources_in_flight": 2, "max_shots_in_flight": 2}

    from talkset.config import CollectConfig
    from talkset.flows.collect import build_stages
    from talkset.media import probe

    stages = build_stages(CollectConfig.from_dict({**cfg, "root": tempfile.gettempdir()}), "probe")
    need = sum(st.resources.cpus * conc.get(n, 1) for n, st in stages.items())
    # every actor must fit on ONE node (the 1-node run); an actor that does not fit stays pending. Plus
    # the machine's cores as room for the autoscaled stages to grow, as `collect` sizes a local Ray
    cpus_per_node = args.cpus_per_node or math.ceil(need) + (os.cpu_count() or 1)
    video_s = sum(probe(p).duration_s for p in paths)
    print(f"machine: {machine()}")
    print(f"clips: {', '.join(p.name for p in paths)} = {video_s:.1f} video-seconds; annotate={annotate}; "
          f"concurrency={conc}; {need:g} CPUs asked by the actors, {cpus_per_node} logical CPUs per Ray node")
    work = Path(tempfile.mkdtemp(prefix="talkset-bench-"))
    res: dict = {"machine": machine(), "video_s": video_s, "annotate": annotate, "clips": [p.name for p in paths]}
    try:
        dec = decode_ceiling(paths)
        res["decode_wall"] = dec
        print(f"decode (ffmpeg -f null): {dec:.1f} s wall = {video_s / dec:.1f} video-s per wall-s", flush=True)

        if "naive" not in args.skip:
            nv = naive(paths, work / "naive", {k: v for k, v in cfg.items() if k != "concurrency"})
            res["naive"] = nv
            print(f"naive (1 process, stages in sequence, each decoding the full source): {nv['wall']:.1f} s wall "
                  f"(+ {nv['setup']:.1f} s model loading) = {video_s / nv['wall']:.2f} video-s per wall-s; "
                  f"{nv['full_decode']:.1f} s of it re-decoding; {nv['clips']} clips", flush=True)

        one = talkset_run(paths, work / "one", cfg, 1, cpus_per_node)
        res["talkset_1node"] = {"wall": one["wall"], "stages": one["summary"]["stages"], "clips": one["summary"]["clips_kept"]}
        print(f"talkset 1-node: {one['wall']:.1f} s wall (incl. Ray connect + actor model loading) = "
              f"{video_s / one['wall']:.2f} video-s per wall-s; {one['summary']['clips_kept']} clips", flush=True)
        if "two-node" not in args.skip:
            two = talkset_run(paths, work / "two", cfg, 2, cpus_per_node)
            res["talkset_2node"] = {"wall": two["wall"], "stages": two["summary"]["stages"], "nodes": two["summary"]["nodes"]}
            print(f"talkset 2-node: {two['wall']:.1f} s wall = {video_s / two['wall']:.2f} video-s per wall-s; "
                  f"actors on {len(two['summary']['nodes'])} nodes", flush=True)

        print("\nratios (same run):")
        if "naive" in res:
            print(f"  talkset / naive  (speed)  = {res['naive']['wall'] / one['wall']:.2f}x")
        print(f"  talkset / decode (speed)  = {dec / one['wall']:.3f}  (decode is {one['wall'] / dec:.0f}x faster)")
        if "talkset_2node" in res:
            print(f"  2-node / 1-node (speed-up) = {one['wall'] / res['talkset_2node']['wall']:.2f}x "
                  f"(both nodes share {os.cpu_count()} cores here)")
        st1 = one["summary"]["stages"]
        cpu_all = sum(v.get("cpu_seconds", 0.0) for v in st1.values())
        busy = cpu_all / (one["wall"] * (os.cpu_count() or 1))
        res["whole_chain_cpu_per_video_s"] = cpu_all / video_s
        res["cores_busy"] = busy
        print(f"  whole chain CPU-s per video-s (actors' own CPU, summed over stages) = {cpu_all / video_s:.2f}")
        print(f"  share of the {os.cpu_count()} cores busy with the actors' work over the run = {busy:.0%}")
        print("\nper stage, per video-second:")
        print(f"  {'stage':9} {'actor-s/video-s':>16} {'naive CPU-s/video-s (incl. re-decode)':>38}")
        for name, st in one["summary"]["stages"].items():
            cpu_naive = res.get("naive", {}).get("cpu", {}).get(name)
            cn = f"{cpu_naive / video_s:38.3f}" if cpu_naive is not None else f"{'-':>38}"
            print(f"  {name:9} {st['seconds'] / video_s:16.3f} {cn}")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(edit_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shot detectors compared in ONE run: PySceneDetect ContentDetector (talkset's default) and
TransNetV2 (``detector: transnetv2``), on the same clips, one after another in this process.

Printed per clip and in total:

- frames per second of each (wall time of ``ShotsStage.process``: decoding included; TransNetV2's
  model load is timed apart), and TransNetV2 / PySceneDetect; also frames per CPU-second (this
  process's CPU time, all its threads), which a busy shared machine distorts less than wall time;
- their agreement: cuts (first frame of each new shot, nominal-rate frame numbers) matched one to
  one within ``--tol`` frames (default 1), as precision / recall of TransNetV2 against
  PySceneDetect, and the unmatched cuts of each, so gradual transitions show up by name.

    python benchmarks/shot_detectors.py                         # the shared clips, TransNetV2 on cuda if present
    python benchmarks/shot_detectors.py --device cpu --threads 2 --clips psd_testvideo.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from talkset import env

CLIPS = Path(os.environ.get("TALKSET_SHARED", REPO.parent / "shared")) / "data" / "clips"
DEFAULT = [
    "dvscripts_blackjournal.mp4",
    "psd_testvideo.mp4",
    "psd_goldeneye-vfr-drop3.mp4",
    "visualvoice_interview.mp4",
    "visualvoice_noisy_restaurant.mp4",
    "clearervoice_tse_001.avi",
]


def match(a: list[int], b: list[int], tol: int) -> tuple[int, list[int], list[int]]:
    """Greedy one-to-one matching of cut frames within ``tol``: (matched, unmatched a, unmatched b)."""
    left = list(b)
    n, only_a = 0, []
    for x in a:
        best = min(left, key=lambda y: abs(y - x), default=None)
        if best is not None and abs(best - x) <= tol:
            left.remove(best)
            n += 1
        else:
            only_a.append(x)
    return n, only_a, left


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", nargs="*", default=DEFAULT, help="file names under shared/data/clips, or paths")
    ap.add_argument("--device", default="auto", help="TransNetV2 device: auto | cpu | cuda:0")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenCV threads")
    ap.add_argument("--tol", type=int, default=1, help="frames within which two cuts agree")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    env.configure(threads=args.threads)
    import torch

    from talkset.items import Source, source_id_for
    from talkset.media import probe
    from talkset.stages.shots import ShotsStage

    torch.set_num_threads(args.threads)
    psd = ShotsStage()
    tn = ShotsStage(detector="transnetv2", device=args.device)
    t0 = time.perf_counter()
    tn.setup()
    load_s = time.perf_counter() - t0
    dev = str(tn._torch_device)
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "none"
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"threads={args.threads}, TransNetV2 on {dev} (GPU: {gpu}); model load {load_s:.1f} s")
    rows, tot = [], {"frames": 0, "psd_s": 0.0, "tn_s": 0.0, "psd_c": 0.0, "tn_c": 0.0, "matched": 0, "psd_cuts": 0, "tn_cuts": 0}
    for name in args.clips:
        path = Path(name) if Path(name).is_file() else CLIPS / name
        task = Source(url=str(path), source_id=source_id_for(str(path)), video_path=str(path))
        frames = probe(path).num_frames
        t, c = time.perf_counter(), time.process_time()
        a = [s.start_frame for s in psd.process(task).shots[1:]]
        psd_s, psd_c = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        b = [s.start_frame for s in tn.process(task).shots[1:]]
        tn_s, tn_c = time.perf_counter() - t, time.process_time() - c
        n, only_psd, only_tn = match(a, b, args.tol)
        rows.append({"clip": path.name, "frames": frames, "psd_fps": frames / psd_s, "tn_fps": frames / tn_s,
                     "psd_fps_cpu": frames / psd_c, "tn_fps_cpu": frames / tn_c,
                     "psd_cuts": a, "tn_cuts": b, "matched": n, "only_psd": only_psd, "only_tn": only_tn})
        for k, v in (("frames", frames), ("psd_s", psd_s), ("tn_s", tn_s), ("psd_c", psd_c), ("tn_c", tn_c),
                     ("matched", n), ("psd_cuts", len(a)),
                     ("tn_cuts", len(b))):
            tot[k] += v
        print(f"{path.name:34s} {frames:5d} fr  PySceneDetect {frames / psd_s:7.1f} fps  TransNetV2 "
              f"{frames / tn_s:7.1f} fps  ({psd_s / tn_s:5.2f}x; per CPU-s {frames / psd_c:.1f} / {frames / tn_c:.1f})  cuts {len(a)} / {len(b)}, {n} agree "
              f"(only PySceneDetect {only_psd}, only TransNetV2 {only_tn})", flush=True)
    prec = tot["matched"] / tot["tn_cuts"] if tot["tn_cuts"] else float("nan")
    rec = tot["matched"] / tot["psd_cuts"] if tot["psd_cuts"] else float("nan")
    summary = {
        "device": dev, "gpu": gpu, "threads": args.threads, "frames": tot["frames"],
        "psd_fps": tot["frames"] / tot["psd_s"], "tn_fps": tot["frames"] / tot["tn_s"],
        "tn_over_psd_speed": tot["psd_s"] / tot["tn_s"], "psd_fps_cpu": tot["frames"] / tot["psd_c"],
        "tn_fps_cpu": tot["frames"] / tot["tn_c"], "agree": tot["matched"],
        "psd_cuts": tot["psd_cuts"], "tn_cuts": tot["tn_cuts"], "precision_vs_psd": prec, "recall_vs_psd": rec,
    }
    print(f"total {tot['frames']} frames: PySceneDetect {summary['psd_fps']:.1f} fps, TransNetV2 "
          f"{summary['tn_fps']:.1f} fps (TransNetV2 / PySceneDetect speed {summary['tn_over_psd_speed']:.2f}x; "
          f"per CPU-second {summary['psd_fps_cpu']:.1f} / {summary['tn_fps_cpu']:.1f}); "
          f"cuts PySceneDetect {tot['psd_cuts']}, TransNetV2 {tot['tn_cuts']}, {tot['matched']} within "
          f"{args.tol} frame(s): TransNetV2 precision {prec:.2f} / recall {rec:.2f} against PySceneDetect")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()

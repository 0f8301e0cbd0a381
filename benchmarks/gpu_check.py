"""The collection stages in ONE process on one or two shared clips, with CUDA where there is a GPU.

No Ray, no Prefect: the stage classes are called one after another in the order of the pipeline
declaration (:mod:`talkset.flows.graph`), so this runs on a bare GPU machine that has Python,
PyTorch and the stages' own packages (ultralytics, onnxruntime-gpu, mediapipe, av, ...). Prints the
device, model loading time, per-stage seconds and video-seconds per wall-second.

    python benchmarks/gpu_check.py                                   # interview + blackjournal 20 s
    python benchmarks/gpu_check.py --clips visualvoice_interview.mp4 --pose-backend onnx \\
        --pose-model $TALKSET_WEIGHTS/<wholebody>.onnx

On a machine without a GPU it runs the same stages on the CPU (the printout says so).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TALKSET_WEIGHTS", str(REPO.parent / "shared" / "weights"))
CLIPS = REPO.parent / "shared" / "data" / "clips"
DEFAULT = ["visualvoice_interview.mp4", "dvscripts_blackjournal.mp4:11.5:20"]


def device_line() -> str:
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"no GPU: CPU only ({os.cpu_count()} cores, {platform.machine()}), torch {torch.__version__}"


def prepare(spec: str, work: Path) -> Path:
    """``name`` or ``name:start:duration`` (a cut made with ffmpeg) under the shared clips."""
    from talkset.media import run_ffmpeg

    name, *cut = spec.split(":")
    src = Path(name) if Path(name).is_file() else CLIPS / name
    if not cut:
        return src
    dst = work / f"{src.stem}_{cut[0]}_{cut[1]}.mp4"
    run_ffmpeg(["-ss", cut[0], "-i", str(src), "-t", cut[1], "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                "-c:a", "aac", str(dst)], f"cut {name}")
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="*", default=DEFAULT, help="names under ../shared/data/clips, name:start:dur")
    ap.add_argument("--device", default="auto", help="auto (cuda:0 when there is one), cpu, cuda:0")
    ap.add_argument("--pose-backend", default="mediapipe", choices=["mediapipe", "onnx"])
    ap.add_argument("--pose-model", default=None, help="ONNX whole-body model for --pose-backend onnx")
    ap.add_argument("--threads", type=int, default=0, help="CPU math threads (0: all cores)")
    args = ap.parse_args(argv)

    from talkset import env

    env.configure(threads=args.threads or os.cpu_count())
    from talkset.flows.graph import SOURCE_ORDER, clip_graph
    from talkset.items import Clip, Source, clip_id_for, source_id_for
    from talkset.media import probe
    from talkset.stages.align import AlignStage
    from talkset.stages.base import StageError
    from talkset.stages.clip import ClipStage
    from talkset.stages.download import DownloadStage
    from talkset.stages.faces import FacesStage
    from talkset.stages.people import PeopleStage
    from talkset.stages.pose import PoseStage
    from talkset.stages.shots import ShotsStage
    from talkset.stages.speaking import SpeakingStage
    from talkset.storage.root import DatasetRoot

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    DatasetRoot(work).make_dirs()
    dev = args.device
    pose_dev = "auto" if dev == "auto" else ("cpu" if dev == "cpu" else "cuda")
    stages = {
        "download": DownloadStage(root=str(work)),
        "shots": ShotsStage(),
        "people": PeopleStage(device=dev),
        "clip": ClipStage(root=str(work)),
        "pose": PoseStage(backend=args.pose_backend, model=args.pose_model, device=pose_dev),
        "faces": FacesStage(),
        "speaking": SpeakingStage(),
        "align": AlignStage(),
    }
    graph = clip_graph(stages)
    print(device_line(), flush=True)
    print(f"pipeline: {' -> '.join(SOURCE_ORDER)}; {graph.describe()}", flush=True)
    t0 = time.perf_counter()
    for st in stages.values():
        st.setup()
    load_s = time.perf_counter() - t0
    print(f"model loading: {load_s:.1f} s", flush=True)

    paths = [prepare(c, work) for c in args.clips]
    video_s = sum(probe(p).duration_s for p in paths)
    secs = {n: 0.0 for n in stages}
    clips = 0

    def run(name, item):
        t = time.perf_counter()
        try:
            return stages[name].run(item)
        finally:
            secs[name] += time.perf_counter() - t

    t0 = time.perf_counter()
    for p in paths:
        src = str(p.resolve())
        try:
            video = run("shots", run("download", Source(url=src, source_id=source_id_for(src))))
        except StageError as exc:
            print(f"  {p.name}: {exc.reason}")
            continue
        for shot in video.shots:
            if shot.reason:
                continue
            item = Clip(source=video, shot=shot, clip_id=clip_id_for(video.source_id, shot.shot_idx), clip_fps=25.0)
            try:
                for name in graph.order:
                    if name == "write":
                        continue
                    item = run(name, item)
                    if name == "people" and not item.shot.kept:
                        break
                else:
                    clips += 1
            except StageError as exc:
                print(f"  {item.clip_id}: {exc.reason}")
    wall = time.perf_counter() - t0
    print(f"clips: {', '.join(p.name for p in paths)} = {video_s:.1f} video-s, {clips} clips kept")
    print("per stage seconds: " + ", ".join(f"{n} {s:.1f}" for n, s in secs.items()))
    print(f"wall {wall:.1f} s (after model loading) = {video_s / wall:.2f} video-s per wall-s")
    heavy = [m for m in ("ray", "prefect") if m in sys.modules]
    print(f"ray/prefect imported: {heavy or 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

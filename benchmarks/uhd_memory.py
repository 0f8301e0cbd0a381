"""Peak memory of annotating a 4K source (issue 12 §2: "a 4K source is annotated without running out of memory").

    python benchmarks/uhd_memory.py [--seconds 2] [--size 3840x2160]

Builds ``--seconds`` of visualvoice_interview.mp4 (two people) scaled to ``--size`` with ffmpeg and
runs every stage of ``collect`` on it in this one process, in pipeline order (download, shots,
people, clip, pose, faces, speaking, align, write), each stage as the flow configures it
(:func:`talkset.flows.collect.build_stages`, ``min_shot_s`` lowered to fit the clip). Prints, per
stage, the wall seconds and the process's peak RSS so far (``ru_maxrss``; ffmpeg children are not
counted: ``RUSAGE_CHILDREN`` would report the parent's size at fork), and the 4K clip's size.
In a real run each stage is its own Ray actor, so each actor's peak is at most the stage's own
increase over the baseline printed first.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", default="3840x2160")
    args = ap.parse_args(argv)
    from talkset import env

    env.configure(threads=1)
    from talkset.config import CollectConfig
    from talkset.flows.collect import build_stages
    from talkset.items import Clip, Source, clip_id_for, source_id_for
    from talkset.media import run_ffmpeg

    shared = REPO.parent / "shared" / "data" / "clips"
    w, h = args.size.split("x")
    with tempfile.TemporaryDirectory(prefix="talkset-uhd-") as tmp:
        src = Path(tmp) / f"uhd_{w}x{h}.mp4"
        run_ffmpeg(["-ss", "2", "-i", str(shared / "visualvoice_interview.mp4"), "-t", f"{args.seconds}",
                    "-vf", f"scale={w}:{h}", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
                    "-c:a", "aac", str(src)], "4K input")  # fmt: skip
        cfg = CollectConfig(root=str(Path(tmp) / "root"), min_shot_s=min(1.0, args.seconds * 0.8))
        stages = build_stages(cfg, run_id="uhd-memory")
        print(f"baseline (imports): peak RSS {peak_mb():.0f} MB", flush=True)
        item = Source(url=str(src), source_id=source_id_for(str(src)))
        for name in ("download", "shots"):
            t0 = time.perf_counter()
            stages[name].setup()
            item = stages[name].run(item)
            print(f"{name:9s} {time.perf_counter() - t0:6.1f} s  peak RSS {peak_mb():6.0f} MB", flush=True)
        video, shot = item, item.shots[0]
        clip = Clip(source=video, shot=shot, clip_id=clip_id_for(video.source_id, 0), clip_fps=cfg.clip_fps)
        for name in ("people", "clip", "pose", "faces", "speaking", "align", "write"):
            t0 = time.perf_counter()
            stages[name].setup()
            out = stages[name].run(clip)
            clip = out if name != "write" else clip  # write returns its summary, not the item
            print(f"{name:9s} {time.perf_counter() - t0:6.1f} s  peak RSS {peak_mb():6.0f} MB", flush=True)
            if name == "people" and not clip.shot.kept:
                print(f"shot rejected by the people stage: {clip.shot.reason}")
                return 1
        print(f"clip {clip.width}x{clip.height}, {clip.num_frames} frames, {len(clip.person_tracks)} people; "
              f"peak RSS of the whole pipeline in one process {peak_mb():.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

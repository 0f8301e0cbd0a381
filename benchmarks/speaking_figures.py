"""Measured figures behind the speaking stage's fusion (talkset/stages/speaking.py) and its cost.

For each real cut below, face tracks come from the faces stage and the speaking stage runs with
the original audio, with silence, and (interview) with another clip's speech. Prints, per face
track: the share of frames with score > 0, the mean of each raw column and of the score, and the
share of frames each single ingredient would call "speaking"; then seconds of compute per second
of video. Run: ``.venv/bin/python benchmarks/speaking_figures.py`` (about 3-6 min on 2 busy cores).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from talkset import env  # noqa: E402

env.configure(threads=1)

from talkset import media  # noqa: E402
from talkset.items import Clip, Shot, Source  # noqa: E402
from talkset.stages.faces import FacesStage  # noqa: E402
from talkset.stages.speaking import SpeakingStage, fuse  # noqa: E402

CLIPS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "clips"

CUTS = [
    # name, clip, start s, duration s, audio variants, note
    ("interview 9.5-15 s", "visualvoice_interview.mp4", 9.5, 5.5,
     {"orig": None, "silent": "silence", "foreign (noisy_restaurant)": ("visualvoice_noisy_restaurant.mp4", 1.0),
      "foreign (clearervoice)": ("clearervoice_tse_001.avi", 1.0)},
     "boxer (right) talks, anchor (left) listens"),
    ("interview 0-8 s", "visualvoice_interview.mp4", 0.0, 8.0, {"orig": None, "silent": "silence"},
     "both talk over each other"),
    ("debate 0-8 s", "clearervoice_tse_001.avi", 0.0, 7.9, {"orig": None, "silent": "silence"},
     "two debaters talking over each other"),
    ("blackjournal two-shot 20-28 s", "dvscripts_blackjournal.mp4", 20.0, 8.0, {"orig": None, "silent": "silence"},
     "interviewer left (3/4 from behind), guest right; the guest talks"),
]  # fmt: skip


def cut(folder: Path, src: Path, start: float, dur: float, audio: dict) -> tuple[Path, dict]:
    """The cut and its audio variants; foreign audio is named by clip file name under CLIPS."""
    variants = {k: (CLIPS / v[0], v[1]) if isinstance(v, tuple) else v for k, v in audio.items()}
    return media.cut_with_audio_variants(folder, src, start, dur, variants)


def task_for(mp4: Path, wav: Path, dur: float) -> Clip:
    return Clip(
        source=Source(url=str(mp4), source_id="bench"), shot=Shot("bench", 0, 0, 0, 0.0, dur),
        clip_id="bench-s0000", clip_fps=25.0, video_path=str(mp4), audio_path=str(wav), num_frames=int(round(dur * 25)),
    )  # fmt: skip


def main() -> None:
    faces, speaking = FacesStage(), SpeakingStage()
    faces.setup()
    speaking.setup()
    seconds, video_s = 0.0, 0.0
    for name, src, start, dur, audio, note in CUTS:
        print(f"\n== {name} ({src}): {note}")
        with tempfile.TemporaryDirectory() as d:
            mp4, wavs = cut(Path(d), CLIPS / src, start, dur, audio)
            tracks = faces.process(task_for(mp4, wavs["orig"], dur)).face_tracks
            print("face tracks: " + ", ".join(
                f"#{t['face_track_id']} frames {t['frame_idx'][0]}-{t['frame_idx'][-1]} x~{np.mean(t['boxes'][:, [0, 2]]):.0f}px"
                for t in tracks))  # fmt: skip
            base = {}
            for var, wav in wavs.items():
                out = {}
                if tracks:
                    task = task_for(mp4, wav, dur)
                    task.face_tracks = tracks
                    t0 = time.process_time()
                    out = speaking.process(task).speaking
                    seconds += time.process_time() - t0
                    video_s += dur
                print(f"  audio = {var}")
                for tid, r in out.items():
                    T, A, V, S = r.asd_logit_talkset, r.asd_logit_ava, r.vad_prob, r.speaking_score
                    talk_only = fuse(T, T, V)  # the same fusion with the TalkSet logit alone
                    line = (
                        f"    track {tid} ({len(S)} fr): score>0 {np.mean(S > 0):.2f}  mean score {S.mean():+.2f} | "
                        f"TalkSet mean {T.mean():+.2f} (>0 {np.mean(T > 0):.2f})  AVA mean {A.mean():+.2f} "
                        f"(>0 {np.mean(A > 0):.2f})  VAD>0.5 {np.mean(V > 0.5):.2f} | TalkSet-only fusion >0 {np.mean(talk_only > 0):.2f}"
                    )
                    if var == "orig":
                        base[tid] = S.mean()
                    elif tid in base:
                        line += f" | mean score vs orig {S.mean() - base[tid]:+.2f}"
                    print(line)
    if video_s:
        print(f"\nspeaking stage: {seconds / video_s:.2f} s CPU per s of video (all face tracks, both checkpoints + VAD; "
              f"{video_s:.0f} s of video, torch threads=1)")  # fmt: skip


if __name__ == "__main__":
    main()

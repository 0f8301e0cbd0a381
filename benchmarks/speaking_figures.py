"""Measured figures behind the speaking stage's fusion (talkset/stages/speaking.py) and its cost.

For each real cut below, face tracks come from the faces stage and the speaking stage runs with
the original audio, with silence, and (interview) with another clip's speech. Prints, per face
track: the share of frames with score > 0, the mean of each raw column and of the score, and the
share of frames each single ingredient would call "speaking"; then seconds of compute per second
of video. First it prints the stage's cost per part (decode + crops, MFCC, VAD, each Light-ASD
pass), before and after the issue-15 changes (one-warp crops, BatchNorm folded into 2D
convolutions), measured in the same run.

    .venv/bin/python benchmarks/speaking_figures.py                 # about 5-10 min on 2 busy cores
    .venv/bin/python benchmarks/speaking_figures.py --cost-only     # the cost table alone
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


COST_CUTS = [
    # name, clip, start s, duration s
    ("blackjournal two-shot (480x360, 2 faces)", "dvscripts_blackjournal.mp4", 12.0, 20.0),
    ("interview (1280x720, 2 faces)", "visualvoice_interview.mp4", 0.0, 17.5),
    ("debate (1280x720, 2 faces)", "clearervoice_tse_001.avi", 0.0, 7.9),
]


def _reference_crops(video_path: str, tracks: list) -> list[np.ndarray]:
    """The crops as the speaking stage made them before issue 15: BGR decode, grey conversion,
    then per face the reference's pad-the-frame / resize / centre crop."""
    import cv2

    from talkset.annotators import light_asd

    geo = [light_asd.smooth_boxes(t.boxes) for t in tracks]
    out = [np.zeros((len(t.frame_idx), 112, 112), np.uint8) for t in tracks]
    for k, _t, img in media.iter_frames(video_path):
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        for i, t in enumerate(tracks):
            j = k - int(t.frame_idx[0])
            if 0 <= j < len(t.frame_idx):
                out[i][j] = light_asd.face_crop(gray, *geo[i][j])
    return out


def cost(faces: FacesStage, speaking: SpeakingStage, seconds: float | None) -> None:
    """CPU seconds per video second of each part of the speaking stage, before (reference crops,
    layer-by-layer Light-ASD) and after (one-warp crops, folded Light-ASD), in one run, one
    thread; plus the largest logit difference the change makes."""
    from talkset.annotators import light_asd

    print("\n== speaking stage cost, CPU-s per video-s (1 thread; before -> after, ratio)")
    for name, src, start, dur in COST_CUTS:
        dur = min(dur, seconds) if seconds else dur
        with tempfile.TemporaryDirectory() as d:
            mp4, wavs = cut(Path(d), CLIPS / src, start, dur, {"orig": None})
            tracks = faces.process(task_for(mp4, wavs["orig"], dur)).face_tracks
            if not tracks:
                print(f"  {name}: no face tracks")
                continue
            t = {}
            if name == COST_CUTS[0][0]:  # warm-up (library loading, first allocations), not timed
                warm = [tr for tr in tracks[:1]]
                _reference_crops(str(mp4), warm)
                w = speaking.face_crops(str(mp4), warm)
                for net in speaking._nets.values():
                    light_asd.score_tracks(net, [np.zeros((4 * len(w[0]), 13), np.float32)], w)

            def timed(key, f, *a):
                t0 = time.process_time()
                r = f(*a)
                t[key] = (time.process_time() - t0) / dur
                return r

            old = timed("crops before", _reference_crops, str(mp4), tracks)
            new = timed("crops after", speaking.face_crops, str(mp4), tracks)
            audio = media.read_audio(wavs["orig"], 16000)
            mfcc = timed("mfcc", light_asd.mfcc_100hz, audio)
            timed("vad", speaking.vad_per_frame, audio, int(round(dur * 25)))
            feats = [light_asd.mfcc_for_frames(mfcc, int(tr.frame_idx[0]), len(c)) for tr, c in zip(tracks, new)]
            diffs = []
            for ck, net in speaking._nets.items():
                net.model.visualEncoder.folded = False
                ref = timed(f"{ck} before", light_asd.score_tracks, net, feats, old)
                net.model.visualEncoder.folded = True
                fast = timed(f"{ck} after", light_asd.score_tracks, net, feats, new)
                diffs.append(max(float(np.abs(a - b).max()) for a, b in zip(ref, fast)))
            before = t["crops before"] + t["mfcc"] + t["vad"] + sum(v for k, v in t.items() if k.endswith(" before") and k != "crops before")
            after = t["crops after"] + t["mfcc"] + t["vad"] + sum(v for k, v in t.items() if k.endswith(" after") and k != "crops after")
            print(f"  {name}, {dur:.1f} s, {len(tracks)} face tracks:")
            print(f"    decode + crops {t['crops before']:.3f} -> {t['crops after']:.3f} ({t['crops before'] / max(t['crops after'], 1e-9):.2f}x); "
                  f"MFCC {t['mfcc']:.4f}; VAD {t['vad']:.4f}")  # fmt: skip
            for ck in speaking._nets:
                print(f"    Light-ASD {ck}: {t[ck + ' before']:.3f} -> {t[ck + ' after']:.3f} "
                      f"({t[ck + ' before'] / max(t[ck + ' after'], 1e-9):.2f}x)")  # fmt: skip
            print(f"    whole stage {before:.3f} -> {after:.3f} CPU-s per video-s ({before / max(after, 1e-9):.2f}x); "
                  f"outside the networks {t['crops before'] + t['mfcc'] + t['vad']:.3f} -> {t['crops after'] + t['mfcc'] + t['vad']:.3f}; "
                  f"largest logit change {max(diffs):.3f}")  # fmt: skip


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cost-only", action="store_true", help="only the cost breakdown")
    ap.add_argument("--cost-seconds", type=float, default=None, help="cut each cost clip to this many seconds")
    args = ap.parse_args()
    faces, speaking = FacesStage(), SpeakingStage()
    faces.setup()
    speaking.setup()
    import torch

    torch.set_num_threads(1)
    cost(faces, speaking, args.cost_seconds)
    if args.cost_only:
        return
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

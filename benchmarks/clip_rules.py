"""What MIT's clip rules (issue 11 §3) keep of the shared clips, against talkset's defaults.

For each video: the shots stage, then the people stage (full-rate decision) on each shot; on every
kept shot the spans where all counted people are present (:func:`talkset.stages.people.present_spans`)
under talkset's trim settings (gaps <= 0.5 s, spans >= ``min_shot_s`` 3 s) and the ``mit`` preset's
(gaps <= 0.48 s, spans >= 5.04 s; the ``mit`` preset's ``min_shot_s`` also drops shots under
5.04 s first). With ``--faces`` each kept shot is also cut (clip stage), its faces found (faces
stage) and linked to the people (align stage), and each person's mean face box area (px^2) printed
with the face-size rules' verdict (``face_size_reason``: >= 4096 px^2, smallest / largest > 0.5).

Prints one line per kept shot and the totals: seconds of clip kept by whole shots, by talkset's
trim and by the MIT rules, in one run.

    .venv/bin/python benchmarks/clip_rules.py                 # the two-person shared clips
    .venv/bin/python benchmarks/clip_rules.py --faces VIDEO...
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from talkset import env  # noqa: E402

env.configure(threads=1)

import numpy as np  # noqa: E402

from talkset.config import CollectConfig, preset  # noqa: E402
from talkset.items import Clip, Source, clip_id_for, source_id_for  # noqa: E402
from talkset.stages.align import AlignStage, face_size_reason  # noqa: E402
from talkset.stages.people import (  # noqa: E402
    PeopleStage,
    frames_in,
    gap_frames,
    min_frames,
    present_spans,
)
from talkset.stages.shots import ShotsStage  # noqa: E402

CLIPS = REPO.parent / "shared" / "data" / "clips"
DEFAULT = ["dvscripts_blackjournal.mp4", "visualvoice_interview.mp4", "clearervoice_tse_001.avi"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", help=f"video paths (default: {', '.join(DEFAULT)} from ../shared)")
    ap.add_argument("--faces", action="store_true", help="also cut, find faces, align, and apply the face-size rules")
    args = ap.parse_args()
    videos = [Path(v) for v in args.videos] or [CLIPS / v for v in DEFAULT]
    ours, mit = CollectConfig(), CollectConfig.from_dict(preset("mit"))
    people = PeopleStage()
    shots_stage = ShotsStage(min_shot_s=ours.min_shot_s)
    tot = {"whole": 0.0, "talkset_trim": 0.0, "mit": 0.0}
    face_rule = {"pass": 0, "reject": 0}
    tmp = Path(tempfile.mkdtemp(prefix="clip-rules-"))
    t0 = time.perf_counter()
    for v in videos:
        src = Source(url=str(v), source_id=source_id_for(str(v)), video_path=str(v))
        src = shots_stage.process(src)
        for shot in src.shots or []:
            if shot.reason:
                continue
            item = people.process(Clip(source=src, shot=shot, clip_id=clip_id_for(src.source_id, shot.shot_idx),
                                       clip_fps=ours.clip_fps))
            if not item.shot.kept:
                print(f"{v.name} shot {shot.shot_idx} {shot.start_s:.2f}-{shot.end_s:.2f} s: rejected {item.shot.reason}")
                continue
            n = frames_in(item)
            fr = [t.frame_idx for t in item.person_tracks]
            sp_ours = present_spans(fr, n, gap_frames(ours.presence_gap_s, 25.0), min_frames(ours.min_shot_s, 25.0))
            sp_mit = [] if shot.end_s - shot.start_s < mit.min_shot_s else present_spans(
                fr, n, gap_frames(mit.presence_gap_s, 25.0), min_frames(mit.min_shot_s, 25.0))
            secs = {"whole": n / 25.0, "talkset_trim": sum(b - a for a, b in sp_ours) / 25.0,
                    "mit": sum(b - a for a, b in sp_mit) / 25.0}
            for k in tot:
                tot[k] += secs[k]
            line = (f"{v.name} shot {shot.shot_idx} {shot.start_s:.2f}-{shot.end_s:.2f} s, {len(fr)} people: whole "
                    f"{secs['whole']:.2f} s; talkset trim {secs['talkset_trim']:.2f} s {sp_ours}; "
                    f"mit {secs['mit']:.2f} s {sp_mit}")
            if args.faces:
                from talkset.stages.clip import ClipStage
                from talkset.stages.faces import FacesStage

                cut = ClipStage(root=str(tmp)).process(item)
                cut = FacesStage().process(cut)
                al = AlignStage().process(cut)
                areas = []
                for t in cut.person_tracks:
                    fb = al.alignment.columns[t.track_id].get("face_box")
                    ok = ~np.isnan(fb).any(axis=1)
                    w, h = fb[ok, 2] - fb[ok, 0], fb[ok, 3] - fb[ok, 1]
                    areas.append(f"{float((w * h).mean()) if ok.any() else float('nan'):.0f} px^2 over {int(ok.sum())} frames")
                verdict = face_size_reason(cut.person_tracks, al.alignment.columns, mit.min_face_area,
                                           mit.min_face_area_ratio)
                face_rule["reject" if verdict else "pass"] += 1
                line += f"; mean face area per person: {areas} -> {verdict or 'passes'}"
            print(line, flush=True)
    print(f"totals over kept shots: whole shots {tot['whole']:.2f} s, talkset trim {tot['talkset_trim']:.2f} s "
          f"({tot['talkset_trim'] / max(tot['whole'], 1e-9):.3f}), MIT rules {tot['mit']:.2f} s "
          f"({tot['mit'] / max(tot['whole'], 1e-9):.3f})" + (f"; MIT face rules: {face_rule}" if args.faces else "")
          + f"; {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

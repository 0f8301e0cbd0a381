"""A labelled speaking benchmark built by construction from the shared clips (issue 11 §1).

No labelled active-speaker data exists here, so the labels are made the way TalkSet made them
(TalkNet, Tao et al. 2021: true audio, silence, foreign audio, shifted audio), extended to two
people on screen. Every case is a real video assembled with ffmpeg from ``../shared/data/clips``;
its per-person, per-frame truth is written next to it (``<case>.truth.json``) with the
construction stated. The benchmark then runs ``talkset collect`` on all cases (in process: real
Prefect, real Ray, every stage) and scores the ``frames`` table against the truth.

How the truth is made (the only facts taken from watching the footage are the *panels* below:
which person talks throughout which source span, and who only listens):

- a **panel** is one person cut out of a shared clip (crop, then scaled to 640 x 720) over a span
  in which that person talks all the time (a talker) or listens with a still mouth (a listener);
  the panel's **own voice** is its clip's audio over the same span (the talker's lip-synced voice);
- a case is two panels side by side (1280 x 720, ``hstack``) or an unmodified two-person span of a
  shared clip (``source`` layout), 25 fps, whose audio follows a **schedule** of intervals, each
  one of: the own voice of the left / right person (``voice``), silence (``silence``), noise
  (``noise``: ffmpeg ``anoisesrc``), or a person's own voice shifted against the picture
  (``shift``); switches have a 10 ms cross-fade, and each voice is scaled to the same RMS
  (-20 dBFS over the case) so that loudness says nothing about who speaks;
- **truth**: a person speaks in a frame exactly when their own, unshifted voice plays in it and
  they are a talker; everyone else is not speaking (a listener, a talker whose voice does not
  play however much their lips move, everyone during silence, noise and shifted audio).

Case families (``FAMILIES``): ``composite`` (two talkers whose lips both move all the time, the
audio switching between their own voices; sides, order, switch times and people varied),
``turns`` (own voices alternating with silence: clean turn-taking), ``silence`` and ``noise``
(an interval of the audio replaced), ``shift`` (a voice shifted by 0.5-1 s: nobody's lips in
sync), ``original`` (unmodified spans with one talker and one listener).

Printed per family: per-frame accuracy of ``speaking_score > 0`` against the truth (frames where
a person has no score count as "not speaking"), AP of ``speaking_score`` (frames without a score
rank last), and the **transition error**: for every switch of a person's truth, the distance
from the switch to the nearest zero crossing of that person's score within ``SEARCH_S`` (a switch
without a crossing there counts ``SEARCH_S`` and as missed); then per case and person the accuracy
and the share of frames > 0.

    python benchmarks/speaking_quality.py --out /tmp/sq            # build, collect, score
    python benchmarks/speaking_quality.py --out /tmp/sq --families composite --score-only
    python benchmarks/speaking_quality.py --out /tmp/sq --dump raw.npz   # raw columns per case/person
    python benchmarks/speaking_quality.py --out /tmp/sq --realign        # this checkout's align stage only

``--score-only`` scores an existing root (``<out>/root``) without collecting; ``--dump`` saves
every raw per-frame column with the truth for offline analysis; ``--realign [--attribution]``
re-runs only this checkout's align stage on the stored annotations. A full run builds 17 cases
(95 s of video) and collects them: 4548 s of wall time on the 2-core VM below, load 15-50.

Figures (2026-12-02, Linux x86_64 2-core VM shared with other jobs; talkset at commit 77a77db,
i.e. before issue 11: ``speaking_score`` = Light-ASD x2 + Silero VAD; ``--out /tmp/sq_main``):

    family     cases  frames accuracy     AP trans med s  <=0.1 s missed
    composite      5    1400    0.502  0.540       0.500     0.00  12/16
    turns          2     560    0.754  0.696       0.040     0.62   2/8
    silence        3     840    0.880  0.934       0.040     1.00   0/8
    noise          2     560    0.848  0.847       0.140     0.50   0/4
    shift          3     840    0.415    nan         nan      nan   0/0
    original       2     560    0.907  0.945         nan      nan   0/0

Both people of every composite score > 0 in 74-89 % of frames whoever speaks (the score follows
the audio, not its owner); silence and noise intervals give < 0 on 97-100 % (silence) and 71-100 %
(noise at -30 dBFS) of frames; shifted voices keep the talker > 0 (84-89 %). AP of each raw
column alone on the composites: TalkSet logit 0.437, AVA logit 0.593, VAD 0.502 (chance: both
people hear the same audio), ``lip_sync`` 0.544. With the align stage's attribution on
(``--realign --attribution``): composite 0.550, turns 0.729, silence 0.868, noise 0.829, shift
0.496, original 0.918 (see :mod:`talkset.stages.align` for why it stays off).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from talkset import env  # noqa: E402

env.configure(threads=1)

CLIPS = REPO.parent / "shared" / "data" / "clips"
FPS = 25
RATE = 16000
PANEL_W, PANEL_H = 640, 720
VOICE_RMS = 0.1  # -20 dBFS
FADE_S = 0.010
SEARCH_S = 0.5  # transition search radius (s)
#: raw per-frame columns whose AP is printed on their own
RAW_SIGNALS = ("asd_logit_talkset", "asd_logit_ava", "vad_prob", "lip_sync", "asd_vad_score")


@dataclass(frozen=True)
class Panel:
    """One person cut out of a shared clip. ``vf``: ffmpeg filter giving 640 x 720 from the clip;
    ``start_s``: source time of the panel's first frame; ``talks``: True when the person talks
    throughout ``[start_s, start_s + 6 s)`` (False: listens, mouth still); ``who``: what was seen."""

    clip: str
    vf: str
    start_s: float
    talks: bool
    who: str


PANELS = {
    # visualvoice_interview: split screen, anchor left half, boxer right half. From 9.6 s to
    # 15.2 s the boxer talks and the anchor listens (mouth closed; Light-ASD + VAD figures in
    # talkset/stages/speaking.py); before 9.5 s they talk over each other.
    "boxer": Panel("visualvoice_interview.mp4", "crop=640:720:640:0", 9.6, True, "boxer (interview, right half), talking"),
    "anchor": Panel("visualvoice_interview.mp4", "crop=640:720:0:0", 9.6, False, "anchor (interview, left half), listening"),
    # visualvoice_noisy_restaurant: one man talking to someone off screen, 0.1-8.9 s (short pauses
    # at ~2.8 s and ~5.4 s), restaurant noise behind him.
    "restaurant": Panel("visualvoice_noisy_restaurant.mp4", "crop=640:720:320:0", 0.3, True, "man in a restaurant, talking"),
    "restaurant_late": Panel("visualvoice_noisy_restaurant.mp4", "crop=640:720:320:0", 3.0, True, "man in a restaurant, talking"),
    # dvscripts_blackjournal 0-11.378 s: the host's close-up, talking throughout (480 x 360 -> crop
    # of the centre, scaled x2).
    "host": Panel("dvscripts_blackjournal.mp4", "crop=320:360:80:0,scale=640:720", 0.5, True, "Black Journal host, talking"),
    "host_late": Panel("dvscripts_blackjournal.mp4", "crop=320:360:80:0,scale=640:720", 5.2, True, "Black Journal host, talking"),
    # dvscripts_blackjournal two-shot (after the cut at 11.378 s): the guest (right) talks from
    # 12.5 s to ~26 s while the interviewer listens; her crop is scaled x3.6 (face ~140 px, soft).
    "guest": Panel("dvscripts_blackjournal.mp4", "crop=180:202:245:50,scale=640:720", 14.0, True, "Black Journal guest, talking"),
    "guest_late": Panel("dvscripts_blackjournal.mp4", "crop=180:202:245:50,scale=640:720", 20.0, True, "Black Journal guest, talking"),
}

#: two-person spans of shared clips used as they are (``source`` layout): (clip, start_s, who is
#: left, who is right, which sides talk)
SOURCES = {
    "interview": ("visualvoice_interview.mp4", 9.6, "anchor, listening", "boxer, talking", "R"),
    "blackjournal": ("dvscripts_blackjournal.mp4", 14.0, "interviewer (from behind), listening", "guest, talking", "R"),
    # the two debaters talk over each other all the time; the audio is the mixture of both
    "debate": ("clearervoice_tse_001.avi", 1.0, "left debater, talking", "right debater, talking", "LR"),
}


@dataclass
class Case:
    """One constructed case. ``layout``: ``("panels", left, right)`` (names in :data:`PANELS`) or
    ``("source", name)`` (in :data:`SOURCES`). ``schedule``: ``(t0, t1, kind, sides, arg)`` with
    kind ``voice`` / ``silence`` / ``noise`` / ``shift``; ``sides`` the people whose own voice
    plays ("L", "R", "LR"); ``arg`` the noise colour or the shift in s (+: audio later than the
    lips). Times in s from the case start; intervals cover ``[0, dur)``."""

    name: str
    family: str
    layout: tuple
    schedule: list
    dur: float = 5.6
    note: str = ""
    people: list = field(default_factory=list)


FAMILIES = ("composite", "turns", "silence", "noise", "shift", "original")

CASES = [
    # -- composites: two talkers, the audio switches between their own voices
    Case("comp_boxer_restaurant", "composite", ("panels", "boxer", "restaurant"),
         [(0, 2.6, "voice", "L", None), (2.6, 5.6, "voice", "R", None)]),
    Case("comp_restaurant_host", "composite", ("panels", "restaurant_late", "host"),
         [(0, 1.8, "voice", "R", None), (1.8, 3.92, "voice", "L", None), (3.92, 5.6, "voice", "R", None)]),
    Case("comp_host_boxer", "composite", ("panels", "host_late", "boxer"),
         [(0, 3.12, "voice", "R", None), (3.12, 5.6, "voice", "L", None)]),
    Case("comp_guest_restaurant", "composite", ("panels", "guest", "restaurant_late"),
         [(0, 1.52, "voice", "L", None), (1.52, 3.4, "voice", "R", None), (3.4, 5.6, "voice", "L", None)]),
    Case("comp_boxer_guest", "composite", ("panels", "boxer", "guest_late"),
         [(0, 2.2, "voice", "R", None), (2.2, 4.4, "voice", "L", None), (4.4, 5.6, "voice", "R", None)]),
    # -- turn-taking: own voices alternating with silence
    Case("turns_host_restaurant", "turns", ("panels", "host", "restaurant"),
         [(0, 1.4, "voice", "L", None), (1.4, 2.2, "silence", "", None), (2.2, 3.8, "voice", "R", None),
          (3.8, 4.4, "silence", "", None), (4.4, 5.6, "voice", "L", None)]),
    Case("turns_interview", "turns", ("source", "interview"),
         [(0, 1.6, "voice", "R", None), (1.6, 2.6, "silence", "", None), (2.6, 4.0, "voice", "R", None),
          (4.0, 4.6, "silence", "", None), (4.6, 5.6, "voice", "R", None)]),
    # -- an interval of silence / noise
    Case("silence_blackjournal", "silence", ("source", "blackjournal"),
         [(0, 2.0, "voice", "R", None), (2.0, 3.4, "silence", "", None), (3.4, 5.6, "voice", "R", None)]),
    Case("silence_debate", "silence", ("source", "debate"),
         [(0, 1.52, "voice", "LR", None), (1.52, 2.72, "silence", "", None), (2.72, 5.6, "voice", "LR", None)]),
    Case("silence_guest_anchor", "silence", ("panels", "guest", "anchor"),
         [(0, 3.0, "voice", "L", None), (3.0, 4.4, "silence", "", None), (4.4, 5.6, "voice", "L", None)]),
    Case("noise_interview", "noise", ("source", "interview"),
         [(0, 3.0, "voice", "R", None), (3.0, 4.4, "noise", "", "pink"), (4.4, 5.6, "voice", "R", None)]),
    Case("noise_anchor_host", "noise", ("panels", "anchor", "host"),
         [(0, 1.2, "voice", "R", None), (1.2, 2.6, "noise", "", "white"), (2.6, 5.6, "voice", "R", None)]),
    # -- shifted voices: nobody's lips are in sync with what plays
    Case("shift_interview_+0.6", "shift", ("source", "interview"), [(0, 5.6, "shift", "R", 0.6)]),
    Case("shift_host_restaurant_-0.8", "shift", ("panels", "host_late", "restaurant"), [(0, 5.6, "shift", "L", -0.8)]),
    Case("shift_blackjournal_+1.0", "shift", ("source", "blackjournal"), [(0, 5.6, "shift", "R", 1.0)]),
    # -- unmodified: one talker, one listener
    Case("original_interview", "original", ("source", "interview"), [(0, 5.6, "voice", "R", None)]),
    Case("original_blackjournal", "original", ("source", "blackjournal"), [(0, 5.6, "voice", "R", None)]),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# building the cases


def _people(case: Case) -> list[dict]:
    """[{side, who, talks, voice_clip, voice_start_s}] for the left and right person."""
    if case.layout[0] == "panels":
        out = []
        for side, name in zip("LR", case.layout[1:]):
            p = PANELS[name]
            out.append({"side": side, "who": p.who, "talks": p.talks, "voice_clip": p.clip, "voice_start_s": p.start_s})
        return out
    clip, start, left, right, talkers = SOURCES[case.layout[1]]
    return [
        {"side": s, "who": w, "talks": s in talkers, "voice_clip": clip, "voice_start_s": start}
        for s, w in (("L", left), ("R", right))
    ]


def _voice(person: dict, t0: float, t1: float, shift: float = 0.0) -> np.ndarray:
    """The person's own voice (their clip's audio) for case times [t0, t1), shifted by ``shift``
    s (audio later than the picture for shift > 0), at ``VOICE_RMS`` over the case."""
    from talkset import media

    s0 = person["voice_start_s"] + t0 - shift
    a = media.read_audio(CLIPS / person["voice_clip"], RATE, max(s0, 0.0), s0 + (t1 - t0))
    if s0 < 0:
        a = np.concatenate([np.zeros(int(round(-s0 * RATE)), np.float32), a])
    n = int(round((t1 - t0) * RATE))
    return np.pad(a, (0, max(0, n - len(a))))[:n]


def _noise(colour: str, n: int, seed: int) -> np.ndarray:
    from talkset import media

    proc = media.subprocess.run(
        [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         f"anoisesrc=color={colour}:sample_rate={RATE}:amplitude=0.5:seed={seed}", "-t", f"{n / RATE + 0.1}",
         "-ac", "1", "-f", "f32le", "-"], capture_output=True, check=True)  # fmt: skip
    a = np.frombuffer(proc.stdout, np.float32)[:n].astype(np.float64)
    return (a / (np.sqrt(np.mean(a**2)) + 1e-12) * VOICE_RMS * 0.3).astype(np.float32)  # -30 dBFS


def build_audio(case: Case, people: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The case's audio (float32, 16 kHz) and the truth per side (bool per frame)."""
    n = int(round(case.dur * RATE))
    frames = int(round(case.dur * FPS))
    by_side = {p["side"]: p for p in people}
    gains = {}
    for p in people:  # one gain per person: their voice over the whole case at VOICE_RMS
        v = _voice(p, 0.0, case.dur)
        gains[p["side"]] = VOICE_RMS / max(float(np.sqrt(np.mean(v.astype(np.float64) ** 2))), 1e-4)
    pieces = []
    truth = {p["side"]: np.zeros(frames, bool) for p in people}
    for i, (t0, t1, kind, sides, arg) in enumerate(case.schedule):
        if abs(t0 * FPS - round(t0 * FPS)) > 1e-6:
            raise ValueError(f"{case.name}: switch at {t0} s is not on a frame boundary (multiple of {1 / FPS} s)")
        m = int(round((t1 - t0) * RATE))
        if kind == "voice" or kind == "shift":
            shift = float(arg) if kind == "shift" else 0.0
            if sides == "LR":  # the two people share one sound track (a two-person source)
                seg = _voice(by_side["L"], t0, t1, shift) * gains["L"]
            else:
                seg = _voice(by_side[sides], t0, t1, shift) * gains[sides]
            if kind == "voice":
                f0, f1 = int(round(t0 * FPS)), int(round(t1 * FPS))
                for s in sides:
                    if by_side[s]["talks"]:
                        truth[s][f0:f1] = True
        elif kind == "silence":
            seg = np.zeros(m, np.float32)
        elif kind == "noise":
            seg = _noise(arg, m, seed=17 + i)
        else:
            raise ValueError(f"{case.name}: unknown schedule kind {kind!r}")
        pieces.append(np.asarray(seg, np.float32)[:m])
    fade = int(FADE_S / 2 * RATE)  # 5 ms out + 5 ms in at every switch (no click)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade)).astype(np.float32)
    for i, seg in enumerate(pieces):
        if i > 0:
            seg[:fade] *= ramp[: len(seg[:fade])]
        if i < len(pieces) - 1:
            seg[-fade:] *= ramp[::-1][-len(seg[-fade:]):]
    audio = np.concatenate(pieces)
    audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    return np.clip(audio, -1, 1).astype(np.float32), truth


def build_video(case: Case, out: Path, wav: Path) -> None:
    from talkset import media

    frames = int(round(case.dur * FPS))
    if case.layout[0] == "panels":
        inputs, chains = [], []
        for i, name in enumerate(case.layout[1:]):
            p = PANELS[name]
            inputs += ["-ss", f"{p.start_s}", "-t", f"{case.dur + 0.5}", "-i", str(CLIPS / p.clip)]
            chains.append(f"[{i}:v]fps={FPS},{p.vf},setsar=1,setpts=PTS-STARTPTS[p{i}]")
        graph = ";".join(chains) + ";[p0][p1]hstack=inputs=2,format=yuv420p[v]"
        audio_in = 2
    else:
        clip, start, *_ = SOURCES[case.layout[1]]
        inputs = ["-ss", f"{start}", "-t", f"{case.dur + 0.5}", "-i", str(CLIPS / clip)]
        graph = f"[0:v]fps={FPS},setsar=1,setpts=PTS-STARTPTS,format=yuv420p[v]"
        audio_in = 1
    media.run_ffmpeg(
        [*inputs, "-i", str(wav), "-filter_complex", graph, "-map", "[v]", "-map", f"{audio_in}:a",
         "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "pcm_s16le",
         "-ar", str(RATE), "-ac", "1", "-t", f"{case.dur}", str(out)],
        f"build {case.name}",
    )  # fmt: skip


def construction(case: Case, people: list[dict]) -> str:
    """How the case and its labels were made, in words (written into the truth file)."""
    if case.layout[0] == "panels":
        pic = " | ".join(
            f"{'left' if p['side'] == 'L' else 'right'}: {PANELS[n].who} from {PANELS[n].clip} "
            f"{PANELS[n].start_s:.1f}-{PANELS[n].start_s + case.dur:.1f} s ({PANELS[n].vf})"
            for p, n in zip(people, case.layout[1:])
        )
    else:
        clip, start, left, right, _ = SOURCES[case.layout[1]]
        pic = f"{clip} {start:.1f}-{start + case.dur:.1f} s unmodified (left: {left}; right: {right})"
    sched = "; ".join(
        f"{t0:.2f}-{t1:.2f} s {kind}"
        + (f": the {' and '.join({'L': 'left', 'R': 'right'}[s] for s in sides)} person's own voice" if kind in ("voice", "shift") else "")
        + (f" shifted {arg:+.1f} s" if kind == "shift" else "")
        + (f" ({arg} noise, -30 dBFS)" if kind == "noise" else "")
        for t0, t1, kind, sides, arg in case.schedule
    )
    return (
        f"picture: {pic}. audio: {sched}; voices at -20 dBFS, 5 ms fades at switches. truth: a person speaks "
        "exactly where their own unshifted voice plays and they are a talker; nobody else."
    )


def build(case: Case, folder: Path) -> Path:
    """Write ``<case>.mkv`` (H.264 + 16 kHz PCM) and ``<case>.truth.json``; returns the video."""
    from scipy.io import wavfile

    folder.mkdir(parents=True, exist_ok=True)
    mkv = folder / f"{case.name}.mkv"
    truth_path = folder / f"{case.name}.truth.json"
    if mkv.is_file() and truth_path.is_file():
        return mkv
    people = _people(case)
    audio, truth = build_audio(case, people)
    wav = folder / f"{case.name}.wav"
    wavfile.write(wav, RATE, (audio * 32767).astype(np.int16))
    build_video(case, mkv, wav)
    wav.unlink()
    switches = {s: [round(float(i) / FPS, 3) for i in np.flatnonzero(np.diff(t.astype(int)) != 0) + 1] for s, t in truth.items()}
    truth_path.write_text(json.dumps({
        "case": case.name, "family": case.family, "fps": FPS, "num_frames": int(round(case.dur * FPS)),
        "construction": construction(case, people),
        "people": [{"side": p["side"], "who": p["who"], "talks": p["talks"],
                    "speaking": truth[p["side"]].astype(int).tolist(), "switches_s": switches[p["side"]]} for p in people],
    }, indent=1))  # fmt: skip
    return mkv


# ---------------------------------------------------------------------------------------------
# scoring


def average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    """AP of ``score`` for the positives of ``truth`` (mean precision at each positive's rank)."""
    truth = np.asarray(truth, bool)
    if not truth.any():
        return float("nan")
    order = np.argsort(-np.asarray(score, np.float64), kind="stable")
    hits = truth[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())


def transition_errors(truth: np.ndarray, score: np.ndarray, fps: float = FPS, search_s: float = SEARCH_S):
    """For each switch of ``truth`` (frame i where truth[i] != truth[i-1], time i/fps), the
    distance (s) to the nearest zero crossing of ``score`` (between frames j-1 and j, time j/fps)
    within ``search_s``; ``search_s`` where there is none. Returns (errors, missed flags)."""
    truth = np.asarray(truth, bool)
    pos = np.asarray(score, np.float64) > 0
    sw = np.flatnonzero(truth[1:] != truth[:-1]) + 1
    cross = np.flatnonzero(pos[1:] != pos[:-1]) + 1
    errs, missed = [], []
    for i in sw:
        d = np.abs(cross - i) / fps if len(cross) else np.array([])
        d = d[d <= search_s + 1e-9]
        errs.append(float(d.min()) if len(d) else search_s)
        missed.append(not len(d))
    return errs, missed


def _filled(v) -> np.ndarray:
    """A DuckDB numpy column with its nulls (a masked array) as NaN (floats) / -1 (integers)."""
    if isinstance(v, np.ma.MaskedArray):
        return v.astype(np.float64).filled(np.nan) if v.dtype.kind == "f" else v.filled(-1)
    return np.asarray(v)


def load_results(root: Path) -> dict[str, dict]:
    """{case name: {"clip": clips row, "tracks": {track_id: {column: array over clip frames}}}}
    from the collected root (committed clips only)."""
    from talkset.storage.catalog import connect

    con = connect(root)
    clips = con.execute("SELECT clip_id, url, start_s, num_frames, width FROM clips").fetchall()
    out = {}
    cols = [r[0] for r in con.execute("DESCRIBE frames").fetchall()]
    signal_cols = [c for c in cols if c not in ("clip_id", "track_id", "frame_idx", "time_s", "box", "box_score",
                                                "body_keypoints", "keypoints", "keypoints_59", "face_box", "source")]
    for clip_id, url, start_s, num_frames, width in clips:
        name = Path(url).stem
        rows = con.execute(
            f"SELECT track_id, frame_idx, (box[1] + box[3]) / 2 AS cx, {', '.join(signal_cols)} FROM frames "
            "WHERE clip_id = ? ORDER BY track_id, frame_idx", [clip_id]
        ).fetchnumpy()
        tracks = {}
        for tid in np.unique(rows["track_id"]):
            m = rows["track_id"] == tid
            tracks[int(tid)] = {k: _filled(v[m]) for k, v in rows.items() if k != "track_id"}
        out[name] = {"clip_id": clip_id, "start_frame": int(round(start_s * FPS)), "num_frames": num_frames,
                     "width": width, "tracks": tracks, "signals": signal_cols}
    return out


def person_series(res: dict, side: str, n: int, column: str = "speaking_score") -> tuple[np.ndarray, float]:
    """The column over the case's frames for the person on ``side`` (the person track whose median
    box centre lies in that half), NaN where absent; and the share of frames with a value."""
    out = np.full(n, np.nan)
    w = res["width"]
    cands = [t for t in res["tracks"].values() if (np.median(t["cx"]) < w / 2) == (side == "L")]
    for t in sorted(cands, key=lambda t: -len(t["frame_idx"])):
        f = t["frame_idx"] + res["start_frame"]
        ok = (f >= 0) & (f < n) & np.isnan(out[np.clip(f, 0, n - 1)])
        v = np.asarray(t.get(column, np.full(len(f), np.nan)), np.float64)
        out[f[ok]] = v[ok]
    return out, float(np.mean(~np.isnan(out)))


def score(out: Path, families: tuple[str, ...], dump: Path | None = None, root: Path | None = None) -> dict:
    """Score every built case that was collected (into ``root``, default ``<out>/root``); prints
    the tables; returns the figures."""
    results = load_results(root or out / "root")
    per_family: dict[str, dict] = {f: {"truth": [], "score": [], "errs": [], "missed": [], "cases": 0, "raw": {}} for f in families}
    lines = []
    raw = {}
    for case in CASES:
        if case.family not in families:
            continue
        truth_file = json.loads((out / "cases" / f"{case.name}.truth.json").read_text())
        res = results.get(case.name)
        if res is None:
            lines.append(f"  {case.name:28s} NO CLIP (rejected or failed: see the shots / failures tables)")
            continue
        fam = per_family[case.family]
        fam["cases"] += 1
        n = truth_file["num_frames"]
        parts = []
        for p in truth_file["people"]:
            t = np.asarray(p["speaking"], bool)
            s, cover = person_series(res, p["side"], n)
            s_filled = np.where(np.isnan(s), -1.0, s)
            fam["truth"].append(t)
            fam["score"].append(s_filled)
            errs, missed = transition_errors(t, s_filled)
            fam["errs"] += errs
            fam["missed"] += missed
            acc = float(np.mean((s_filled > 0) == t))
            parts.append(f"{p['side']} acc {acc:.2f} >0 {np.mean(s_filled > 0):.2f} truth {t.mean():.2f} cover {cover:.2f}"
                         + (f" trans {' '.join(f'{e:.2f}' for e in errs)}" if errs else ""))
            for col in RAW_SIGNALS:
                if col in res["signals"]:
                    v = person_series(res, p["side"], n, col)[0]
                    fam["raw"].setdefault(col, []).append(np.where(np.isnan(v), -np.inf, v))
            if dump is not None:
                for col in res["signals"]:
                    raw[f"{case.name}|{p['side']}|{col}"] = person_series(res, p["side"], n, col)[0]
                raw[f"{case.name}|{p['side']}|truth"] = t
        lines.append(f"  {case.name:28s} " + " | ".join(parts))
    figures = {}
    print(f"\n{'family':10s} {'cases':>5s} {'frames':>7s} {'accuracy':>8s} {'AP':>6s} {'trans med s':>11s} {'<=0.1 s':>8s} {'missed':>6s}")
    for f, d in per_family.items():
        if not d["truth"]:
            continue
        t = np.concatenate(d["truth"])
        s = np.concatenate(d["score"])
        acc = float(np.mean((s > 0) == t))
        ap = average_precision(t, s)
        errs = np.asarray(d["errs"])
        med = float(np.median(errs)) if len(errs) else float("nan")
        within = float(np.mean(errs <= 0.1 + 1e-9)) if len(errs) else float("nan")
        figures[f] = {"cases": d["cases"], "frames": int(len(t)), "accuracy": acc, "ap": ap, "transition_median_s": med,
                      "transition_within_0.1": within, "transitions": int(len(errs)), "missed": int(sum(d["missed"]))}
        print(f"{f:10s} {d['cases']:5d} {len(t):7d} {acc:8.3f} {ap:6.3f} {med:11.3f} {within:8.2f} {sum(d['missed']):3d}/{len(errs):<3d}")
    print("\nAP of each raw signal alone against the truth (frames without a value rank last):")
    for f, d in per_family.items():
        if d["truth"] and np.concatenate(d["truth"]).any():
            t = np.concatenate(d["truth"])
            aps = {c: average_precision(t, np.concatenate(v)) for c, v in d["raw"].items()
                   if np.isfinite(np.concatenate(v)).any()}  # fmt: skip
            figures[f]["raw_ap"] = aps
            print(f"  {f:10s} " + "  ".join(f"{c} {a:.3f}" for c, a in aps.items()))
    print("\nper case (L / R person: accuracy, share > 0, share of truth frames speaking, share of frames scored,"
          " transition errors s):")
    print("\n".join(lines))
    if dump is not None:
        np.savez_compressed(dump, **raw)
        print(f"raw columns -> {dump}")
    return figures


def realign(out: Path, dest: Path, attribution: bool = False) -> None:
    """Re-run this checkout's align stage on the annotations stored in ``<out>/root`` (person
    tracks, keypoints, face boxes and the speaking stage's raw columns, all as collected) and
    write the resulting ``frames`` / ``clips`` shards into a new root ``dest``: the attribution
    rule can be measured without collecting again (people, pose, faces and speaking are not
    re-run; a full run of this benchmark is what gives the figures)."""
    import shutil

    from talkset.items import (
        Clip,
        FaceTrack,
        PersonTrack,
        PoseTrack,
        Shot,
        Source,
        SpeakingTrack,
    )
    from talkset.stages.align import AlignStage
    from talkset.stages.write import WriteStage
    from talkset.storage.catalog import connect

    src = out / "root"
    if dest.exists():
        shutil.rmtree(dest)
    con = connect(src)
    stage, writer = AlignStage(attribution=attribution), WriteStage(root=str(dest), run_id="realign")
    rows = con.execute("SELECT * FROM clips").fetchall()
    names = [d[0] for d in con.description]
    for row in rows:
        clip = dict(zip(names, row))
        cid = clip["clip_id"].replace("'", "''")
        tbl = con.sql(f"SELECT * FROM frames WHERE clip_id = '{cid}' ORDER BY track_id, frame_idx").to_arrow_table()
        fr = {c: tbl.column(c).to_pylist() for c in tbl.column_names}
        people, poses, faces, speaking = [], {}, {}, {}
        nan = float("nan")

        def arr(col, rows, shape):
            return np.array([fr[col][i] if fr[col][i] is not None else np.full(shape, nan) for i in rows], np.float32)

        pre = "asd_vad_score" if any(v is not None for v in fr.get("asd_vad_score", [])) else "speaking_score"
        for tid in sorted(set(fr["track_id"])):
            rows = [i for i, t in enumerate(fr["track_id"]) if t == tid]
            fi = np.asarray([fr["frame_idx"][i] for i in rows], np.int32)
            people.append(PersonTrack(tid, fi, arr("box", rows, 4), arr("box_score", rows, ()), arr("body_keypoints", rows, (17, 3))))
            poses[tid] = PoseTrack(tid, fi, np.nan_to_num(arr("keypoints", rows, (133, 3))))
            for fid in sorted({fr["face_track_id"][i] for i in rows} - {None}):
                k = [i for i in rows if fr["face_track_id"][i] == fid]
                kf = np.asarray([fr["frame_idx"][i] for i in k], np.int32)
                faces[fid] = FaceTrack(fid, kf, arr("face_box", k, 4), np.ones(len(k), np.float32),
                                       np.zeros((len(k), 5, 2), np.float32), np.ones(len(k), bool))  # fmt: skip
                speaking[fid] = SpeakingTrack(fid, kf, *(arr(c, k, ()) for c in ("asd_logit_talkset", "asd_logit_ava", "vad_prob", pre)))
        source = Source(url=clip["url"], source_id=clip["source"], video_path=str(src / clip["source_path"]))
        shot = Shot(clip["source"], int(clip["shot_idx"]), 0, int(clip["num_frames"]), clip["start_s"], clip["end_s"], kept=True)
        item = Clip(source=source, shot=shot, clip_id=clip["clip_id"], clip_fps=float(clip["fps"]), person_tracks=people,
                    video_path=str(src / clip["video_path"]), audio_path=str(src / clip["audio_path"]), width=clip["width"],
                    height=clip["height"], num_frames=clip["num_frames"], poses=poses, face_tracks=list(faces.values()),
                    speaking=speaking, start_s=clip["start_s"], end_s=clip["end_s"])  # fmt: skip
        writer.process(stage.process(item))


def collect_cases(out: Path, videos: list[Path]) -> dict:
    from prefect.testing.utilities import prefect_test_harness

    from talkset.flows.collect import collect

    config = {
        # the benchmark measures the speaking score, not the shot filter: split screens and the
        # boxer's gestures must not get a case rejected for camera motion
        "max_camera_motion": 1.0,
        "max_sources_in_flight": 1,
        "max_shots_in_flight": 1,
        "progress_every_s": 120.0,
    }
    with prefect_test_harness(server_startup_timeout=120):
        return collect(sources=[str(v) for v in videos], root=str(out / "root"), config=config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the cases and the dataset root")
    ap.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--cases", nargs="*", default=None, help="only these case names")
    ap.add_argument("--score-only", action="store_true", help="score <out>/root as it is")
    ap.add_argument("--realign", action="store_true",
                    help="re-run this checkout's align stage on <out>/root's stored annotations into <out>/realigned, score that")
    ap.add_argument("--dump", type=Path, default=None, help="save raw per-frame columns + truth (npz)")
    ap.add_argument("--attribution", action="store_true", help="with --realign: the align stage's speech attribution on")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}; {time.strftime('%Y-%m-%d %H:%M')}")
    fams = tuple(args.families)
    cases = [c for c in CASES if c.family in fams and (args.cases is None or c.name in args.cases)]
    if args.cases is not None:
        CASES[:] = cases
    if not args.score_only and not args.realign:
        t0 = time.perf_counter()
        videos = [build(c, args.out / "cases") for c in cases]
        print(f"built {len(videos)} cases in {time.perf_counter() - t0:.0f} s -> {args.out / 'cases'}")
        summary = collect_cases(args.out, videos)
        print(f"collect: {summary['clips_kept']} clips kept of {len(videos)} cases, {summary['failures']} failures, "
              f"{summary['seconds']:.0f} s; stage seconds {summary['stage_seconds']}")
    root = None
    if args.realign:
        root = args.out / "realigned"
        realign(args.out, root, args.attribution)
        print(f"align stage re-run on the stored annotations -> {root}")
    figures = score(args.out, fams, args.dump, root)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

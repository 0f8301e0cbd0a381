"""align stage: give each person track its pose, its face track and its speaking score.

The rule is the MIT paper's (Multi-human Interactive Talking Dataset, Sec. 3.1): "a pose goes to
the person box holding most of its keypoints", and a face track goes to the person whose box
contains it. Inputs, all optional except ``clip.person_tracks``:

- ``clip.poses``: ``{track_id: PoseTrack}``, whole-body keypoints estimated top-down on that
  track's box.
- ``clip.face_tracks``: list of :class:`talkset.items.FaceTrack` (see :mod:`talkset.stages.faces`).
- ``clip.speaking``: ``{face_track_id: SpeakingTrack}``.

Poses (:func:`assign_poses`), per clip frame, among the person tracks present in it:

1. A pose's *owner* is the person box holding most of its confident keypoints (score >=
   ``kpt_score_min`` = 0.4, all 133 slots; a keypoint inside two overlapping boxes counts for
   both). Ties go to the track the pose was estimated for; a pose with no confident keypoint in
   any box stays with that track (nothing says otherwise).
2. A person keeps the pose estimated on their own box when they own it. Otherwise they take,
   among the poses they own, the one with most confident keypoints in their box ("reassigned":
   the pose estimated for the box that matches best). If they own none, their keypoints for that
   frame are NaN ("dropped"). A pose goes to one person at most: never duplicated.

Face tracks (:func:`assign_faces`): for a face track and a person track sharing frames, count the
shared frames where the face box centre lies inside the person box (``inside``) and inside its
upper ``upper_frac`` part (``upper``). The face track goes to the person with the most ``upper``
frames (then most ``inside``), provided ``inside`` is more than half of their shared frames
("in most of the frames they share"); otherwise it stays unassigned. A person holds one face
track per frame: when face tracks claiming the same person overlap in time, the one with more
``inside`` frames (then the longer one) is kept and the other is left unassigned (counted in
``stats["face_conflicts"]``); face tracks that do not overlap in time may all map to the same
person.

Output, ``task.annotations["align"]``::

    {"columns": {track_id: {column: array aligned to that Track's frame_idx}},
     "face_to_person": {face_track_id: track_id},
     "stats": {...counts, see AlignStage.process...}}

with the columns of :mod:`talkset.stages.write`: ``keypoints`` float32 (T, 133, 3) and ``keypoints_59``
float32 (T, 59, 3) (NaN rows where no pose was assigned), ``face_box`` float32 (T, 4) NaN where
the person has no face, ``face_track_id`` int32 (T,) -1 for none, ``asd_logit_talkset``,
``asd_logit_ava``, ``vad_prob``, ``speaking_score`` float32 (T,) NaN for none. A stage that did
not run (its field ``None`` on the clip) leaves its columns out (null in Parquet): no pose
-> no keypoint columns; no faces -> no face or speaking columns; no speaking -> no speaking
columns. A person with no face track gets NaN speaking values and -1, never a made-up score.

Speech attribution (issue 11 §2; :func:`attribute_speech`). The speaking stage's score follows
the audio but cannot say whose voice it is: two people whose lips move while one of them speaks
both score > 0. Where the whole-body keypoints are known, each person's mouth is checked against
the speech itself and kept as columns: ``lip_aperture`` (inner-lip gap / eye-corner distance,
from the iBUG-68 inner lips in the 133 keypoints) and ``lip_sync`` (its correlation with the
speech envelope of the clip's audio over 1.64 s, the sound following the lips by 80-240 ms;
NaN where the mouth barely moves; see :mod:`talkset.annotators.av_sync`). With
``attribution=True`` a person's score is pulled towards -1 where another person's lips follow
the speech clearly better (``lip_sync`` of the other >= ``sync_min`` and above theirs by
>= ``sync_margin``, ramping over ``sync_ramp``; never raised), and the speaking stage's score is
kept as ``asd_vad_score``. It is **off by default**: measured, it does not pay.

Measured with ``benchmarks/speaking_quality.py`` (17 cases built from the shared clips; per-frame
accuracy of ``speaking_score > 0``, 2-core VM, 2026-12-02), no signal available offline
attributes speech reliably:

- Light-ASD (both checkpoints) does not test synchronisation: on a split-screen composite of the
  boxer and the restaurant man, each face's mean logit with its own voice and with the other's
  differs by < 0.5 either way, and shifting the whole audio by up to 0.8 s changes the boxer's
  TalkSet logit by < 1.3 with no peak at offset 0 (a SyncNet-style offset test finds nothing).
- ``lip_sync`` separates a speaker with large, clear mouth movements (the boxer: +0.35-0.41
  higher when his own voice plays) but not the others: MediaPipe's inner lips barely open for the
  Black Journal host and guest (aperture 0.02 +- 0.01; FaceMesh run on the face crops directly
  gives the same), and the restaurant man's separation is < 0.1. Over the composites its AP is
  0.61-0.67 (1 = perfect, 0.5 = chance).
- The rule with (sync_min, sync_margin) = (0.15, 0.15): composites 0.502 -> 0.550, turn-taking
  0.754 -> 0.729, silence 0.880 -> 0.868, noise 0.848 -> 0.829; with (0.35, 0.35): composites
  0.511, turns 0.746, noise 0.818. Every setting that gains on composites loses 2-3 points on
  turn-taking or noise, where a listener's jittering lips correlate with the talker's voice by
  chance (up to +0.66 over a window).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from talkset import media
from talkset.annotators import av_sync
from talkset.items import (
    Alignment,
    Clip,
    FaceTrack,
    PersonTrack,
    PoseTrack,
    SpeakingTrack,
)
from talkset.stages.base import Resources, Stage, StageError
from talkset.wholebody import NUM_KEYPOINTS, SUBSET_59

SPEAKING_COLUMNS = SpeakingTrack.COLUMNS


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(..., K, 2) points x (B, 4) boxes x1 y1 x2 y2 -> bool (..., K, B), edges inclusive."""
    x = points[..., 0][..., None]
    y = points[..., 1][..., None]
    return (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])


def _rows(frame_idx: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Row of each ``want`` frame in sorted-unique ``frame_idx``, -1 where absent."""
    frame_idx = np.asarray(frame_idx)
    want = np.asarray(want)
    if len(frame_idx) == 0:
        return np.full(len(want), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(frame_idx, want), 0, len(frame_idx) - 1)
    return np.where(frame_idx[pos] == want, pos, -1)


def _check_pose(tid: Any, p: PoseTrack) -> tuple[np.ndarray, np.ndarray]:
    fi = np.asarray(p.frame_idx, dtype=np.int64).reshape(-1)
    kp = np.asarray(p.keypoints, dtype=np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3) or len(kp) != len(fi):
        raise StageError(
            f"align: pose of track {tid} has keypoints {kp.shape} for {len(fi)} frames; expected "
            f"({len(fi)}, 133, 3) (COCO-WholeBody): re-run the pose stage"
        )
    order = np.argsort(fi, kind="stable")
    return fi[order], kp[order]


def assign_poses(
    tracks: list[PersonTrack], pose: dict[int, PoseTrack], kpt_score_min: float = 0.4
) -> tuple[dict[int, np.ndarray], dict[str, int]]:
    """Apply the pose rule of the module doc.

    Returns ``({track_id: float32 (T, 133, 3)}, stats)``: keypoints aligned to each track's
    ``frame_idx`` (NaN rows where no pose went to the person) and counts over track-frames:
    ``pose_own`` (kept their own pose), ``pose_reassigned`` (took the pose estimated on another
    box), ``pose_dropped`` (own pose belongs to someone else and no other pose is theirs),
    ``pose_missing`` (no pose estimated on their box and none theirs), ``pose_unused`` (poses
    that went to nobody).
    """
    by_id = {t.track_id: t for t in tracks}
    poses: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for tid, p in pose.items():
        tid = int(tid)
        if tid in by_id:
            poses[tid] = _check_pose(tid, p)
    out = {t.track_id: np.full((len(t), NUM_KEYPOINTS, 3), np.nan, dtype=np.float32) for t in tracks}
    stats = dict(pose_own=0, pose_reassigned=0, pose_dropped=0, pose_missing=0, pose_unused=0)

    # frame -> [(track_id, row in track)]
    present: dict[int, list[tuple[int, int]]] = {}
    for t in tracks:
        for r, f in enumerate(np.asarray(t.frame_idx).tolist()):
            present.setdefault(int(f), []).append((t.track_id, r))

    for f, people in present.items():
        ids = [tid for tid, _ in people]
        boxes = np.stack([np.asarray(by_id[tid].boxes[r], dtype=np.float64) for tid, r in people])
        # poses estimated in this frame, by the track they were estimated for
        cand: dict[int, np.ndarray] = {}
        for tid in ids:
            if tid in poses:
                fi, kp = poses[tid]
                row = _rows(fi, np.array([f]))[0]
                if row >= 0:
                    cand[tid] = kp[row]
        # owner of each pose: the box holding most of its confident keypoints (ties: own box)
        owner: dict[int, int] = {}
        count: dict[tuple[int, int], int] = {}
        for q, kp in cand.items():
            conf = kp[:, 2] >= kpt_score_min
            inside = points_in_boxes(kp[conf, :2].astype(np.float64), boxes)  # (K', P)
            n = inside.sum(axis=0)
            for j, p in enumerate(ids):
                count[(q, p)] = int(n[j])
            best = int(n.max()) if len(n) else 0
            own = int(n[ids.index(q)])
            owner[q] = q if (best == 0 or own == best) else ids[int(np.argmax(n))]
        used = set()
        for tid, r in people:
            mine = [q for q, o in owner.items() if o == tid]
            if tid in mine:
                q = tid
                stats["pose_own"] += 1
            elif mine:
                q = max(mine, key=lambda q: (count[(q, tid)], -q))
                stats["pose_reassigned"] += 1
            else:
                stats["pose_dropped" if tid in cand else "pose_missing"] += 1
                continue
            out[tid][r] = cand[q]
            used.add(q)
        stats["pose_unused"] += len(set(cand) - used)
    return out, stats


def _face_arrays(ft: FaceTrack) -> tuple[int, np.ndarray, np.ndarray]:
    fid = int(ft.face_track_id)
    fi = np.asarray(ft.frame_idx, dtype=np.int64).reshape(-1)
    boxes = np.asarray(ft.boxes, dtype=np.float64).reshape(-1, 4)
    if len(fi) != len(boxes):
        raise StageError(f"align: face track {fid} has {len(fi)} frames but {len(boxes)} boxes: re-run the faces stage")
    return fid, fi, boxes


def assign_faces(
    tracks: list[PersonTrack], faces: list[FaceTrack], upper_frac: float = 0.5
) -> tuple[dict[int, int], dict[str, Any]]:
    """Apply the face-track rule of the module doc.

    Returns ``({face_track_id: track_id}, stats)`` with stats ``face_tracks`` (given),
    ``face_tracks_assigned``, ``face_unassigned`` (no person contains it in most shared frames) and
    ``face_conflicts`` (lost to an overlapping face track of the same person).
    """
    claims: dict[int, list[tuple[int, int, int]]] = {}  # person -> [(inside, length, face id)]
    frames_of: dict[int, np.ndarray] = {}
    unassigned = 0
    for ft in faces:
        fid, fi, fboxes = _face_arrays(ft)
        frames_of[fid] = fi
        cx = (fboxes[:, 0] + fboxes[:, 2]) / 2
        cy = (fboxes[:, 1] + fboxes[:, 3]) / 2
        best = None
        for t in tracks:
            tf = np.asarray(t.frame_idx, dtype=np.int64)
            rows = _rows(tf, fi)  # track row of each face frame
            shared = rows >= 0
            n_shared = int(shared.sum())
            if n_shared == 0:
                continue
            b = np.asarray(t.boxes, dtype=np.float64)[rows[shared]]
            x, y = cx[shared], cy[shared]
            inside = (x >= b[:, 0]) & (x <= b[:, 2]) & (y >= b[:, 1]) & (y <= b[:, 3])
            upper = inside & (y <= b[:, 1] + upper_frac * (b[:, 3] - b[:, 1]))
            n_in, n_up = int(inside.sum()), int(upper.sum())
            if 2 * n_in <= n_shared:
                continue
            key = (n_up, n_in, -t.track_id)
            if best is None or key > best[0]:
                best = (key, t.track_id)
        if best is None:
            unassigned += 1
            continue
        claims.setdefault(best[1], []).append((best[0][1], len(fi), fid))

    face_to_person: dict[int, int] = {}
    conflicts = 0
    for tid, cl in claims.items():
        kept: list[np.ndarray] = []
        for _, _, fid in sorted(cl, key=lambda c: (-c[0], -c[1], c[2])):
            fi = frames_of[fid]
            if any(np.intersect1d(fi, k, assume_unique=True).size for k in kept):
                conflicts += 1
                continue
            kept.append(fi)
            face_to_person[fid] = tid
    stats = dict(
        face_tracks=len(faces),
        face_tracks_assigned=len(face_to_person),
        face_unassigned=unassigned,
        face_conflicts=conflicts,
    )
    return face_to_person, stats


@dataclass
class AlignStage(Stage):
    """Pose -> person, face track -> person, and the per-frame annotation columns (module doc).

    Parameters:
    - ``kpt_score_min``: keypoint score counted as confident when deciding a pose's owner (0.4,
      the issue's rule).
    - ``upper_frac``: a face centre in the top ``upper_frac`` of a person box is preferred when
      two person boxes contain it (0.5: the upper half).
    - ``sync_window`` (frames), ``sync_lags`` (frames the sound follows the lips): the
      :func:`talkset.annotators.av_sync.lip_sync` measure (41 = 1.64 s; 2-6 = 80-240 ms, the
      lag range of mouth opening to envelope reported for continuous speech).
    - ``attribution``, ``sync_min``, ``sync_margin``, ``sync_ramp``: the speech-attribution
      rule of :func:`attribute_speech` (module doc). Off by default (measured: it costs the
      turn-taking and noise cases 2-3 points for at most 5 points on the composites); off,
      ``speaking_score`` is the speaking stage's score and ``lip_aperture`` / ``lip_sync`` are
      still written.
    - ``min_face_area`` (px^2), ``min_face_area_ratio``: MIT's face-size rules
      (:func:`face_size_reason`); ``None`` (default): not applied. A clip that breaks one comes
      back with ``rejected`` set (the flow does not write it and records the reason in the shot's
      row). They need the faces stage: without face tracks (annotate off) they cannot run and
      nothing is rejected.
    """

    kpt_score_min: float = 0.4
    upper_frac: float = 0.5
    sync_window: int = 41
    sync_lags: tuple[int, ...] = (2, 3, 4, 5, 6)
    sync_min: float = 0.15
    sync_margin: float = 0.15
    sync_ramp: float = 0.1
    attribution: bool = False
    min_face_area: float | None = None
    min_face_area_ratio: float | None = None

    name: ClassVar[str] = "align"
    resources: ClassVar[Resources] = Resources(cpus=0.25)
    reads: ClassVar[tuple[str, ...]] = ("person_tracks",)
    optional_reads: ClassVar[tuple[str, ...]] = ("poses", "face_tracks", "speaking", "audio_path")
    writes: ClassVar[tuple[str, ...]] = ("alignment", "rejected")

    def process(self, task: Clip) -> Clip:
        """Return the clip with ``alignment`` set. ``alignment.stats`` holds ``people``,
        ``track_frames``, the counts of :func:`assign_poses` and :func:`assign_faces` (where those
        stages ran), ``people_without_face`` and ``speaking_frames`` (track-frames given a
        speaking score). Raises :class:`StageError` for malformed annotations."""
        tracks = list(task.person_tracks)
        columns: dict[int, dict[str, np.ndarray]] = {t.track_id: {} for t in tracks}
        stats: dict[str, Any] = {"people": len(tracks), "track_frames": int(sum(len(t) for t in tracks))}
        face_to_person: dict[int, int] = {}
        if task.poses is not None:
            kps, pstats = assign_poses(tracks, task.poses, self.kpt_score_min)
            stats.update(pstats)
            for tid, kp in kps.items():
                columns[tid]["keypoints"] = kp
                columns[tid]["keypoints_59"] = np.ascontiguousarray(kp[:, list(SUBSET_59), :])
        if task.face_tracks is not None:
            face_to_person, fstats = assign_faces(tracks, list(task.face_tracks), self.upper_frac)
            stats.update(fstats)
            stats.update(_face_columns(tracks, task.face_tracks, task.speaking, face_to_person, columns))
        if task.poses is not None:
            stats.update(self._lip_columns(task, tracks, columns))
        rejected = task.rejected
        if task.face_tracks is not None and (self.min_face_area is not None or self.min_face_area_ratio is not None):
            rejected = rejected or face_size_reason(tracks, columns, self.min_face_area, self.min_face_area_ratio)
        alignment = Alignment(columns=columns, face_to_person=face_to_person, stats=stats)
        return replace(task, alignment=alignment, rejected=rejected)

    def _lip_columns(self, task: Clip, tracks: list[PersonTrack], columns: dict[int, dict[str, np.ndarray]]) -> dict:
        """``lip_aperture`` for every person with confident face keypoints; with the clip's audio also
        ``lip_sync``, and (``attribution``, speaking scores present) ``asd_vad_score`` = the
        speaking stage's score and ``speaking_score`` after :func:`attribute_speech`."""
        n = max([int(task.num_frames or 0)] + [int(t.frame_idx[-1]) + 1 for t in tracks if len(t)])
        dense_ap: dict[int, np.ndarray] = {}
        for t in tracks:
            kp = columns[t.track_id].get("keypoints")
            if kp is None:
                continue
            ap = av_sync.lip_aperture(kp)
            if not np.isfinite(ap).any():
                continue  # no face keypoints for this person: no lip columns
            columns[t.track_id]["lip_aperture"] = ap
            d = np.full(n, np.nan, np.float32)
            d[np.asarray(t.frame_idx, dtype=np.int64)] = ap
            dense_ap[t.track_id] = d
        out = {"lip_frames": int(sum(np.isfinite(columns[t]["lip_aperture"]).sum() for t in dense_ap))}
        if not dense_ap or not task.audio_path or not Path(task.audio_path).is_file():
            return out
        try:
            audio = media.read_audio(task.audio_path, av_sync.RATE)
        except media.MediaError as exc:
            raise StageError(f"align: clip {task.clip_id}: {exc}", stage=self.name) from exc
        env = av_sync.speech_envelope(audio, n, av_sync.RATE, float(task.clip_fps or av_sync.FPS))
        dense_sync = {tid: av_sync.lip_sync(ap, env, self.sync_window, self.sync_lags) for tid, ap in dense_ap.items()}
        for t in tracks:
            if t.track_id in dense_sync:
                columns[t.track_id]["lip_sync"] = dense_sync[t.track_id][np.asarray(t.frame_idx, dtype=np.int64)]
        if not self.attribution:
            return out
        demoted = 0
        for t in tracks:
            col = columns[t.track_id]
            if "speaking_score" not in col:
                continue
            fi = np.asarray(t.frame_idx, dtype=np.int64)
            others = [d[fi] for tid, d in dense_sync.items() if tid != t.track_id]
            col["asd_vad_score"] = col["speaking_score"].copy()
            if t.track_id not in dense_sync or not others:
                continue
            col["speaking_score"] = attribute_speech(
                col["speaking_score"], dense_sync[t.track_id][fi], np.fmax.reduce(others),
                self.sync_min, self.sync_margin, self.sync_ramp,
            )  # fmt: skip
            demoted += int(np.sum((col["asd_vad_score"] > 0) & ~(col["speaking_score"] > 0)))
        out["speech_demoted_frames"] = demoted
        return out


def face_size_reason(
    tracks: list[PersonTrack],
    columns: dict[int, dict[str, np.ndarray]],
    min_area: float | None,
    min_ratio: float | None,
) -> str | None:
    """MIT's face-size rules on a clip's people, or ``None`` when the clip passes.

    Source: github.com/Zeyu-Zhu/Multi-human-Talking-Video-Dataset,
    ``data_collection_pipeline/2_select_valid_clips.py``: per chosen face track, the mean over its
    frames of the box area ``|w * h|`` must be ``>= min_face_area`` (64 * 64 = 4096 px^2) and the
    smallest / largest of those means ``> min_face_area_ratio`` (0.5). The seed's boxes are in
    pixels of its 25 fps re-encode of the source at the source's size (``ffmpeg -r 25``, no
    scaling; ``1_whisperV_inference.py``); talkset's clips are not scaled either, so the same px.

    Here a person's mean face area is the mean of ``w * h`` of ``columns[track_id]["face_box"]``
    over the frames the person has a face (the face tracks :func:`assign_faces` gave them, over
    this clip; the seed averages over the whole face track, which may extend past the clip).
    A person with no face frame at all breaks the rule (in the seed a person *is* a face track).
    Returns e.g. ``"face_area=2210<4096"`` (the smallest mean, px^2), ``"face_ratio=0.41"`` or
    ``"no_face:track=1"``. ``None`` for either threshold skips that rule.
    """
    if min_area is None and min_ratio is None:
        return None
    means = []
    for t in tracks:
        fb = columns.get(t.track_id, {}).get("face_box")
        ok = None if fb is None else ~np.isnan(fb).any(axis=1)
        if fb is None or not ok.any():
            return f"no_face:track={t.track_id}"
        b = fb[ok].astype(np.float64)
        means.append(float(np.mean(np.abs((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))))
    if not means:
        return None
    if min_area is not None and min(means) < min_area:
        return f"face_area={min(means):.0f}<{min_area:g}"
    if min_ratio is not None and min(means) / max(means) <= min_ratio:
        return f"face_ratio={min(means) / max(means):.2f}"
    return None


def attribute_speech(
    score: np.ndarray,
    own_sync: np.ndarray,
    other_sync: np.ndarray,
    sync_min: float = 0.15,
    sync_margin: float = 0.15,
    ramp: float = 0.1,
) -> np.ndarray:
    """Lower a person's speaking score where another person's lips follow the speech clearly
    better than theirs (all arrays (T,), aligned frames; NaN sync = not seen).

    ``penalty = clip((other - own - sync_margin) / ramp, 0, 1) * clip((other - sync_min) / ramp, 0, 1)``
    with ``own`` / ``other`` the person's :func:`~talkset.annotators.av_sync.lip_sync` and the best
    of the others' (NaN own counts as 0, NaN other as -1: no evidence, no change), and
    ``score' = score - penalty * (score + 1)``: unchanged without strong contrary evidence, -1 with
    it. A score that is already < 0 stays < 0; the rule never raises a score. Returns float32 (T,)."""
    s = np.asarray(score, np.float64)
    own = np.nan_to_num(np.asarray(own_sync, np.float64), nan=0.0)
    other = np.nan_to_num(np.asarray(other_sync, np.float64), nan=-1.0)
    r = max(float(ramp), 1e-6)
    pen = np.clip((other - own - sync_margin) / r, 0, 1) * np.clip((other - sync_min) / r, 0, 1)
    out = s - pen * (s + 1.0)
    return np.where(np.isnan(s), np.nan, out).astype(np.float32)


def _face_columns(
    tracks: list[PersonTrack],
    faces: list[FaceTrack],
    speaking: dict[int, SpeakingTrack] | None,
    face_to_person: dict[int, int],
    columns: dict[int, dict[str, np.ndarray]],
) -> dict[str, int]:
    """Fill ``face_box``, ``face_track_id`` and (when ``speaking`` is not None) the speaking
    columns of every person in ``columns`` from their assigned face tracks; returns the stats
    ``people_without_face`` and ``speaking_frames``."""
    by_fid = {int(ft.face_track_id): ft for ft in faces}
    for t in tracks:
        n = len(t)
        col = columns[t.track_id]
        col["face_box"] = np.full((n, 4), np.nan, dtype=np.float32)
        col["face_track_id"] = np.full(n, -1, dtype=np.int32)
        if speaking is not None:
            for c in SPEAKING_COLUMNS:
                col[c] = np.full(n, np.nan, dtype=np.float32)
    n_speaking = 0
    for fid, tid in face_to_person.items():
        t = next(t for t in tracks if t.track_id == tid)
        tf = np.asarray(t.frame_idx, dtype=np.int64)
        _, fi, fboxes = _face_arrays(by_fid[fid])
        rows = _rows(tf, fi)
        ok = rows >= 0
        col = columns[tid]
        col["face_box"][rows[ok]] = fboxes[ok]
        col["face_track_id"][rows[ok]] = fid
        sp = None if speaking is None else speaking.get(fid)
        if sp is None:
            continue
        sfi = np.asarray(sp.frame_idx, dtype=np.int64).reshape(-1)
        srows = _rows(tf, sfi)
        sok = srows >= 0
        for c in SPEAKING_COLUMNS:
            v = np.asarray(getattr(sp, c), dtype=np.float32).reshape(-1)
            if len(v) != len(sfi):
                raise StageError(
                    f"align: speaking column {c} of face track {fid} has {len(v)} values for "
                    f"{len(sfi)} frames: re-run the speaking stage"
                )
            col[c][srows[sok]] = v[sok]
        n_speaking += int(sok.sum())
    out = {"people_without_face": sum(1 for t in tracks if not np.any(columns[t.track_id]["face_track_id"] >= 0))}
    if speaking is not None:
        out["speaking_frames"] = n_speaking
    return out

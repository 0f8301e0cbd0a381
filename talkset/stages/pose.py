"""pose stage: COCO-WholeBody keypoints (133) per person track per clip frame.

The MIT paper ("Multi-human Interactive Talking Dataset", Sec. 3.1) annotates every person with
whole-body keypoints (and keeps a 59-point subset, :data:`talkset.wholebody.SUBSET_59`). This stage
runs a top-down whole-body estimator on each person track's box in every frame the track is
present, decoding the clip once.

Backends (one interface, chosen by ``backend``):

- ``"mediapipe"`` (default; runs offline on CPU): MediaPipe Holistic 0.10.21 on each box with the
  neighbours masked out, one Holistic instance per person track per clip (it tracks landmarks
  across frames), 33 pose / 468 face / 2x21 hand landmarks mapped onto the 133 slots, merged with
  the people stage's YOLO body keypoints (``prefer_yolo_body``); see :mod:`talkset.annotators.pose_mediapipe`.
- ``"onnx"``: an RTMW / DWPose (``dw-ll_ucoco_384.onnx``) / RTMPose-wholebody SimCC model exported
  to ONNX, run with onnxruntime (CUDA where present), ``model`` = its path;
  see :mod:`talkset.annotators.pose_onnx`. With ``prefer_yolo_body`` the YOLO body keypoints are merged in the
  same way (per keypoint, :func:`talkset.annotators.pose_mediapipe.fuse_body`).
- ``"mmpose"``: the same models from an mmpose ``config`` + checkpoint ``model`` (optional extra
  ``talkset[mmpose]``); see :mod:`talkset.annotators.pose_mmpose`.

Input: a :class:`talkset.items.Clip` with ``video_path`` (the 25 fps clip) and ``person_tracks``
(``frame_idx``, ``boxes`` (T, 4) px, ``body_kpts`` (T, 17, 3)); tick ``k`` of ``talkset.media.iter_frames(video_path, fps=clip_fps)``
is track frame index ``k`` (ticks up to :data:`END_SLACK_FRAMES` past the clip's last frame use
that last frame).

Output: ``clip.poses = {track_id: PoseTrack}`` (:class:`talkset.items.PoseTrack`: ``keypoints``
float32 (T, 133, 3) aligned to each person track's ``frame_idx``; rows ``[x px, y px, score]`` in
clip pixels, all 0 where a keypoint was not found). ``clip.models["pose"]`` names the backend and
its version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from talkset.items import Clip, PoseTrack
from talkset.stages.base import Resources, Stage, StageError
from talkset.wholebody import NUM_KEYPOINTS

BACKENDS = ("mediapipe", "onnx", "mmpose")
#: Track frames up to this many past the clip's last decoded frame are estimated on that frame
#: (a re-encoded clip can end one tick early); beyond it the tracks do not fit the clip.
END_SLACK_FRAMES = 2


@dataclass
class PoseStage(Stage):
    """Whole-body keypoints per person track per frame (module docstring).

    Parameters:
        backend: "mediapipe" (default), "onnx" or "mmpose".
        model: the ONNX file (onnx) or checkpoint (mmpose); a path or a name resolved by
            :func:`talkset.weights.resolve`. Unused by mediapipe.
        config: mmpose model config (.py); mmpose only.
        prefer_yolo_body: merge the people stage's YOLO body keypoints per keypoint
            (:func:`talkset.annotators.pose_mediapipe.fuse_body`: the detector's point where its score >= 0.3).
        device: "auto" (CUDA when the backend can use it, else CPU), "cpu", "cuda".
        frame_stride: estimate every ``frame_stride``-th frame of each track (its first frame,
            then every stride-th); the frames between copy the keypoints of the nearest estimated
            frame of the same track (earlier one on ties). 1 = every frame.
        batch_crops: ONNX / mmpose backends: person crops of consecutive frames queued and run as one
            batch of the network (at least this many; MediaPipe runs one crop at a time).
        mediapipe_options: extra keyword arguments for
            :class:`talkset.annotators.pose_mediapipe.MediaPipeWholeBody` (e.g. ``{"hand_fallback": True}``).
        track_threads: MediaPipe: person tracks of a frame estimated at once, each by its own
            Holistic instance in its own thread (MediaPipe releases the GIL; frames still go to each
            instance in order). The actor asks Ray for this many CPUs. Measured on this task's
            2-core VM, 100 frames x 2 people: 7.3 s wall one after another, 5.2 s with 2 threads, the
            same 9.1-9.2 CPU-s and the same keypoints. 1 = one at a time.
    """

    name: ClassVar[str] = "pose"
    resources: ClassVar[Resources] = Resources(cpus=1, gpus=0.25)
    reads: ClassVar[tuple[str, ...]] = ("video_path", "person_tracks")
    writes: ClassVar[tuple[str, ...]] = ("poses",)

    backend: str = "mediapipe"
    model: str | None = None
    config: str | None = None
    prefer_yolo_body: bool = True
    device: str = "auto"
    frame_stride: int = 1
    mediapipe_options: dict[str, Any] | None = None
    batch_crops: int = 32
    track_threads: int = 2

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"pose backend must be one of {BACKENDS}, got {self.backend!r}")
        if int(self.frame_stride) < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if int(self.track_threads) < 1:
            raise ValueError(f"track_threads must be >= 1, got {self.track_threads}")
        if self.backend == "mediapipe" and int(self.track_threads) > 1:
            # this actor's threads run at once: ask Ray for that many CPUs (instance value over the class's)
            self.resources = Resources(cpus=int(self.track_threads), gpus=type(self).resources.gpus)
        self._threads = None
        self._estimator = None
        self._version: str | None = None
        self._pending: list = []

    def gpus_wanted(self) -> float:
        """GPUs one actor of this stage asks Ray for (where the cluster has GPUs): none for
        MediaPipe (CPU only: a GPU held by it would sit idle) or ``device="cpu"``, else
        ``resources.gpus``. Read by :class:`talkset.flows.runner.StagePool`."""
        if self.backend == "mediapipe" or self.device == "cpu":
            return 0.0
        return self.resources.gpus

    def setup(self) -> None:
        """Load the backend's model once (mediapipe: only checks the import; its Holistic
        instances are per track and made in :meth:`process`)."""
        if self.backend == "mediapipe":
            from talkset.annotators.pose_mediapipe import mediapipe_version

            self._version = f"mediapipe {mediapipe_version()} holistic (model_complexity=1)"
        elif self.backend == "onnx":
            from talkset.annotators.pose_onnx import OnnxWholeBody

            self._estimator = OnnxWholeBody(self.model, device=self.device)
            self._version = f"onnx {self._estimator.version}"
        else:
            from talkset.annotators.pose_mmpose import MMPoseWholeBody

            self._estimator = MMPoseWholeBody(self.config, self.model, device=self.device)
            self._version = self._estimator.version

    def model_info(self) -> dict[str, str]:
        if self._version is None:
            self.setup()
        extra = " + yolo body" if self.prefer_yolo_body else ""
        return {"pose": f"{self._version}{extra}"}

    # -- per clip -----------------------------------------------------------------------------

    def _plan(self, task: Clip) -> dict[int, list[tuple[Any, int]]]:
        """clip frame -> [(track_id, row in the track)] for the rows to estimate."""
        plan: dict[int, list[tuple[Any, int]]] = {}
        for tr in task.person_tracks:
            fi = np.asarray(tr.frame_idx)
            if len(fi) != len(tr.boxes):
                raise StageError(
                    f"pose: track {tr.track_id} of {task.clip_id} has {len(fi)} frame indices but "
                    f"{len(tr.boxes)} boxes; re-run the people stage"
                )
            for row in range(0, len(fi), int(self.frame_stride)):
                plan.setdefault(int(fi[row]), []).append((tr.track_id, row))
        return plan

    def process(self, task: Clip) -> Clip:
        """Return the clip with ``poses`` and ``models["pose"]`` set (module docstring).

        Raises :class:`StageError` when the clip file is missing or cannot be decoded, or when a
        track's frames are not in the clip.
        """
        from talkset.annotators.pose_mediapipe import fuse_body
        from talkset.media import MediaError, iter_frames

        if self._version is None:
            self.setup()
        if not task.video_path or not os.path.isfile(task.video_path):
            raise StageError(f"pose: clip file {task.video_path!r} of {task.clip_id} does not exist (run the clip stage first)")
        tracks = {tr.track_id: tr for tr in task.person_tracks}
        out = {
            tid: {
                "frame_idx": np.asarray(tr.frame_idx, dtype=np.int32).copy(),
                "keypoints": np.zeros((len(tr), NUM_KEYPOINTS, 3), dtype=np.float32),
            }
            for tid, tr in tracks.items()
        }
        done = {tid: np.zeros(len(tr), dtype=bool) for tid, tr in tracks.items()}
        plan = self._plan(task)
        self._pending = []  # ONNX crops queued across frames, run as one batch (batch_crops)
        per_track = {}
        if self.backend == "mediapipe":
            from concurrent.futures import ThreadPoolExecutor

            from talkset.annotators.pose_mediapipe import MediaPipeWholeBody

            opts = dict(self.mediapipe_options or {})
            per_track = {tid: MediaPipeWholeBody(**opts) for tid in tracks}
            workers = min(int(self.track_threads), len(tracks))
            # made per clip (a pool does not pickle: the stage travels to its actors)
            self._threads = ThreadPoolExecutor(workers, thread_name_prefix="pose") if workers > 1 else None
        last = max(plan) if plan else -1
        seen_frames = 0
        img = None
        try:
            if last >= 0:
                for k, _t, img in iter_frames(task.video_path, fps=task.clip_fps or None):
                    seen_frames = k + 1
                    jobs = plan.get(k)
                    if jobs:
                        self._run_frame(img, k, jobs, tracks, out, done, per_track, fuse_body)
                    if k >= last:
                        break
                if 0 < last - (seen_frames - 1) <= END_SLACK_FRAMES:
                    # the clip's encode ended a frame or two before the people stage's last tick:
                    # those ticks show the clip's last frame (as ffmpeg's fps filter would)
                    for k in range(seen_frames, last + 1):
                        if plan.get(k):
                            self._run_frame(img, k, plan[k], tracks, out, done, per_track, fuse_body)
                    seen_frames = last + 1
            self._flush(tracks, out, done, fuse_body)
        except (MediaError, OSError) as exc:
            raise StageError(f"pose: cannot decode clip {task.video_path}: {exc}") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("av"):
                raise StageError(f"pose: cannot decode clip {task.video_path}: {exc}") from exc
            raise
        finally:
            if self._threads is not None:
                self._threads.shutdown(wait=True)
                self._threads = None
            for est in per_track.values():
                est.close()
        if seen_frames <= last:
            raise StageError(
                f"pose: tracks of {task.clip_id} reach frame {last} but {task.video_path} has only "
                f"{seen_frames} frames; the tracks do not belong to this clip"
            )
        for tid in tracks:
            _fill_skipped(out[tid]["keypoints"], done[tid])
        poses = {tid: PoseTrack(tid, out[tid]["frame_idx"], out[tid]["keypoints"]) for tid in tracks}
        return replace(task, poses=poses, models={**task.models, **self.model_info()})

    def _run_frame(self, img, k, jobs, tracks, out, done, per_track, fuse_body) -> None:
        boxes = {tid: np.asarray(tracks[tid].boxes[row], dtype=np.float64) for tid, row in jobs}
        # every person present in this frame (not only the planned rows) is a neighbour to mask
        present = []
        for tr in tracks.values():
            hit = np.nonzero(np.asarray(tr.frame_idx) == k)[0]
            if len(hit):
                present.append((tr.track_id, np.asarray(tr.boxes[hit[0]], dtype=np.float64)))
        if self.backend == "mediapipe":

            def one(job) -> None:
                tid, row = job
                others = [b for t, b in present if t != tid]
                yolo = tracks[tid].body_kpts[row] if self.prefer_yolo_body else None
                try:
                    kp = per_track[tid](img, boxes[tid], others, yolo_body=yolo)
                except ValueError:
                    return  # box outside the frame: nothing found, row stays 0
                out[tid]["keypoints"][row] = kp

            for tid, row in jobs:
                done[tid][row] = True  # estimated (all-zero keypoints if the box is off-frame)
            if self._threads is not None and len(jobs) > 1:
                list(self._threads.map(one, jobs))  # one job per track: each instance sees its frames in order
            else:
                for job in jobs:
                    one(job)
            return
        ids = [tid for tid, _ in jobs]
        if not hasattr(self._estimator, "prepare"):  # mmpose: one call per frame
            self._store(self._estimator(img, np.stack([boxes[t] for t in ids])), jobs, tracks, out, done, fuse_body)
            return
        x, mats = self._estimator.prepare(img, np.stack([boxes[t] for t in ids]))
        self._pending.append((x, mats, list(jobs)))
        if sum(len(p[0]) for p in self._pending) >= max(1, int(self.batch_crops)):
            self._flush(tracks, out, done, fuse_body)

    def _flush(self, tracks, out, done, fuse_body) -> None:
        """Run the ONNX network once on the crops queued from several frames."""
        if not self._pending:
            return
        x = np.concatenate([p[0] for p in self._pending])
        mats = [m for p in self._pending for m in p[1]]
        jobs = [j for p in self._pending for j in p[2]]
        self._pending = []
        self._store(self._estimator.infer(x, mats), jobs, tracks, out, done, fuse_body)

    def _store(self, res, jobs, tracks, out, done, fuse_body) -> None:
        if res.shape[1] != NUM_KEYPOINTS:
            raise StageError(
                f"pose: the {self.backend} model gives {res.shape[1]} keypoints, not the 133 of "
                "COCO-WholeBody; use a whole-body model (RTMW, DWPose, RTMPose-wholebody)"
            )
        for (tid, row), kp in zip(jobs, res):
            if self.prefer_yolo_body:
                kp = fuse_body(kp, tracks[tid].body_kpts[row])
            out[tid]["keypoints"][row] = kp
            done[tid][row] = True


def _fill_skipped(kp: np.ndarray, done: np.ndarray) -> None:
    """Rows not estimated (``frame_stride`` > 1) copy the nearest estimated row (earlier on ties)."""
    if done.all() or not done.any():
        return
    idx = np.nonzero(done)[0]
    for r in np.nonzero(~done)[0]:
        j = np.searchsorted(idx, r)
        cands = [idx[j - 1]] if j > 0 else []
        if j < len(idx):
            cands.append(idx[j])
        best = min(cands, key=lambda c: (abs(c - r), c))
        kp[r] = kp[best]

"""Speaking score per face track per frame: Light-ASD (two checkpoints) fused with Silero VAD.

Ingredients (all offline), one value per face-track frame, each kept as a column:

- ``asd_logit_talkset``: Light-ASD (Liao et al., CVPR 2023; :mod:`talkset.annotators.light_asd`) with the
  TalkSet-finetuned weights; the class-1 ("speaking") logit of its audio-visual head.
- ``asd_logit_ava``: the same network with the AVA-ActiveSpeaker weights.
- ``vad_prob``: Silero VAD (``silero-vad`` 6.2.3, ONNX model shipped in the wheel) speech
  probability of the clip's 16 kHz audio in 32 ms chunks, interpolated to 25 fps frame centres.

Both Light-ASD passes see the reference's inputs (Columbia_test.py): face crops from the
median-filtered (13 frames) track boxes with crop scale 0.40, 112 x 112 grayscale, and the
clip's MFCC rows 4f .. 4f+3 for frame f; each face track is scored in one pass, tracks batched.

Fusion and the map to [-1, 1]::

    p_face   = sigmoid(smooth5((asd_logit_talkset + asd_logit_ava) / 2))
    p_speech = piecewise-linear(smooth5(vad_prob)), vad_threshold -> 0.5 (0 -> 0, 1 -> 1)
    speaking_score = 2 * min(p_speech, p_face) - 1                        in [-1, 1]

so a face track scores > 0 exactly when the VAD hears speech (smoothed prob > threshold) AND
the two active-speaker models together say this face is the one speaking (mean logit > 0); the
score is -1 when either is certain it is not, +1 when both are certain it is. ``smooth5`` is a
centred 5-frame moving average, the reference demo's smoothing.

Why (measured on ../shared/data with YuNet face tracks, see benchmarks/speaking_figures.py):

- Neither Light-ASD checkpoint knows silence. With the audio replaced by zeros the TalkSet
  logit stays where it was for a face with moving lips (visualvoice_interview 9.5-15 s, the
  boxer: mean +3.7 with sound, +3.0 silent; share > 0 100 % both ways), and the AVA logit goes
  negative for everyone (mean -3.3 to -4.4), whether or not that face speaks. The VAD is the
  gate that makes the score follow the audio: with silence vad_prob is 0.00 and every face
  scores < 0 in 100 % of frames.
- With speech present both checkpoints separate the speaker from the listener (same cut,
  original audio: boxer TalkSet +3.7 / AVA +1.1, anchor -1.1 / -2.2). Averaging the two logits
  (an ensemble) cut the listening anchor's frames > 0 from 25 % (TalkSet alone) to 7 %, the
  boxer stays at 96 %.
- Foreign speech (another clip's voice over the same cut) cannot be told apart from the
  speaker's own voice by these models: the boxer, whose lips move, scores > 0 in 81-95 % of
  frames, but the listening anchor stays < 0 in 87-95 % of frames (a silent face does not
  become a speaker because someone speaks).
- A face whose mouth moves while no one speaks (chewing, mouthing) is < 0 through the VAD.
  What the score cannot do: tell which of two moving mouths owns foreign or dubbed speech. The
  align stage checks each mouth against the speech where the whole-body keypoints are known
  (``lip_sync``, :mod:`talkset.stages.align`); this stage's score is kept there as
  ``asd_vad_score``.

Cost (issue 15; ``benchmarks/speaking_figures.py --cost-only``, CPU-s per video-s with one
thread, before -> after in one run, 2-core VM shared with other jobs, 2026-12-02): the two
Light-ASD passes are 93-99 % of the stage; decoding and cropping cost 0.02 (480x360) to 0.09
(720p) CPU-s/s, MFCC 0.001, Silero VAD 0.008. Light-ASD's inference path folds every BatchNorm
into its convolution and runs the (1, k, k) / (k, 1, 1) 3D convolutions as 2D ones
(:meth:`talkset.annotators.light_asd._VisualEncoder.forward_folded`, logits equal to 5e-7): per
checkpoint 1.53-1.60x faster, the whole stage 3.98 -> 2.61 (blackjournal two-shot, 3 face
tracks), 2.79 -> 1.81 (interview 720p, 2 tracks), 2.87 -> 1.85 (debate 720p, 2 tracks). Crops
are one ``cv2.warpAffine`` per face instead of padding the whole frame per face (equal within
one grey level; the largest logit change of both changes together is 0.09); at these sizes
that is as fast as before (0.94-1.07x), it keeps a large frame from costing more per face.
On CPU nodes the visual encoder (96 % of Light-ASD's time) then runs in ONNX Runtime
(``runtime``, :meth:`talkset.annotators.light_asd.LightASD.use_onnxruntime`): 2.2x per checkpoint,
logits within 1e-5; the whole stage on the bundled clip then takes 41-44 CPU-s for its 61.6 s
two-person clip (0.57-0.60 CPU-s per video-s of the clip; 2026-12-07, quiet VM).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from talkset import media, provenance
from talkset.annotators import light_asd
from talkset.annotators.onnx_cpu import check_runtime, torch_threads, use_onnxruntime
from talkset.items import Clip, FaceTrack, SpeakingTrack
from talkset.stages.base import Resources, Stage, StageError
from talkset.weights import resolve

VAD_CHUNK = 512  # samples at 16 kHz = 32 ms, the Silero VAD step


def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average over ``n`` frames (odd); the window shrinks at the ends."""
    x = np.asarray(x, dtype=np.float64)
    if n <= 1 or len(x) == 0:
        return x
    h = n // 2
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    lo, hi = np.maximum(i - h, 0), np.minimum(i + h + 1, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def fuse(
    asd_logit_talkset: np.ndarray,
    asd_logit_ava: np.ndarray,
    vad_prob: np.ndarray,
    smooth_frames: int = 5,
    vad_threshold: float = 0.5,
) -> np.ndarray:
    """Speaking score in [-1, 1] per frame of one face track from its raw columns, all (F,):
    ``2 * min(p_speech, p_face) - 1`` with ``p_face = sigmoid(mean of the two Light-ASD logits)``
    and ``p_speech`` the VAD probability mapped piecewise-linearly so that ``vad_threshold`` goes
    to 0.5; both inputs smoothed over ``smooth_frames``. Returns float32 (F,). See the module
    docstring for why."""
    lip = _moving_average((np.asarray(asd_logit_talkset, np.float64) + np.asarray(asd_logit_ava, np.float64)) / 2, smooth_frames)
    v = np.clip(_moving_average(vad_prob, smooth_frames), 0.0, 1.0)
    th = min(max(float(vad_threshold), 1e-6), 1 - 1e-6)
    p_speech = np.where(v < th, 0.5 * v / th, 0.5 + 0.5 * (v - th) / (1 - th))
    p_face = _sigmoid(lip)
    return np.clip(2.0 * np.minimum(p_speech, p_face) - 1.0, -1.0, 1.0).astype(np.float32)


@dataclass
class SpeakingStage(Stage):
    """Speaking score per face track per frame (see the module docstring).

    Parameters:
        talkset_weights, ava_weights: Light-ASD checkpoints (file names in the weights folder or
            paths; resolved with :func:`talkset.weights.resolve`).
        crop_scale: face-crop margin of the reference (Columbia_test.py ``cropScale``, 0.40).
        smooth_frames: centred moving-average length (frames) applied to the mean Light-ASD
            logit and the VAD probability before fusion (the reference demo smooths over 5 frames).
        vad_threshold: Silero VAD probability that counts as speech (0.5, Silero's default).
        device: "auto" (CUDA when present), "cpu" or "cuda[:n]".
        batch_frames: most padded frames per Light-ASD batch.
        runtime: "auto" (Light-ASD's visual encoder in ONNX Runtime on the CPU, PyTorch on a GPU),
            "torch" or "onnxruntime" (:mod:`talkset.annotators.onnx_cpu`; measured 2.2x faster
            per checkpoint on the CPU, logits equal within 1e-5).

    ``process(Clip) -> Clip`` reads ``face_tracks`` (:class:`talkset.items.FaceTrack`:
    consecutive ``frame_idx``, ``boxes`` (F, 4) px) and the clip's ``video_path`` (25 fps) and
    ``audio_path`` (16 kHz mono WAV), and returns the clip with ``speaking`` =
    ``{face_track_id: SpeakingTrack}`` (:class:`talkset.items.SpeakingTrack`, empty without face
    tracks). Raises :class:`StageError` on a missing file, no audio, or a malformed track.
    """

    talkset_weights: str = "light-asd_finetuning_TalkSet.model"
    ava_weights: str = "light-asd_pretrain_AVA_CVPR.model"
    crop_scale: float = 0.40
    smooth_frames: int = 5
    vad_threshold: float = 0.5
    device: str = "auto"
    batch_frames: int = 4096
    runtime: str = "auto"

    name: ClassVar[str] = "speaking"
    resources: ClassVar[Resources] = Resources(cpus=1, gpus=0.25)
    reads: ClassVar[tuple[str, ...]] = ("video_path", "audio_path", "face_tracks")
    writes: ClassVar[tuple[str, ...]] = ("speaking",)

    def __post_init__(self) -> None:
        check_runtime(self.runtime, "speaking")
        self._nets: dict[str, Any] | None = None
        self._vad = None

    # -- models ---------------------------------------------------------------------------
    def _device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def setup(self) -> None:
        from silero_vad import load_silero_vad

        dev = self._device()
        self._nets = {
            "talkset": light_asd.LightASD.from_checkpoint(resolve(self.talkset_weights), device=dev),
            "ava": light_asd.LightASD.from_checkpoint(resolve(self.ava_weights), device=dev),
        }
        if use_onnxruntime(self.runtime, dev):
            for net in self._nets.values():
                net.use_onnxruntime(torch_threads())
        self._vad = load_silero_vad(onnx=True)  # shipped in the wheel: nothing is downloaded

    def model_info(self) -> dict[str, str]:
        return {
            "light-asd talkset": Path(self.talkset_weights).name,
            "light-asd ava": Path(self.ava_weights).name,
            "silero-vad": f"silero-vad {provenance.version('silero-vad')}",
        }

    # -- pieces ---------------------------------------------------------------------------
    def vad_per_frame(self, audio: np.ndarray, num_frames: int, fps: float = 25.0) -> np.ndarray:
        """Silero VAD speech probability per video frame: probabilities of 32 ms chunks,
        linearly interpolated from chunk centres to frame centres. audio: float32 16 kHz mono.
        Returns float32 (num_frames,) in [0, 1]."""
        import torch

        if self._vad is None:
            self.setup()
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        probs = self._vad.audio_forward(x, 16000).numpy().reshape(-1)
        t_chunk = (np.arange(len(probs)) * VAD_CHUNK + VAD_CHUNK / 2) / 16000.0
        t_frame = (np.arange(num_frames) + 0.5) / fps
        return np.interp(t_frame, t_chunk, probs).astype(np.float32)

    def face_crops(self, video_path: str, tracks: list[FaceTrack]) -> list[np.ndarray]:
        """112 x 112 grayscale crops of each face track, decoding the clip once.

        Each crop is one ``cv2.warpAffine`` of the grey frame (:func:`light_asd.crop_matrix`)
        instead of padding the whole frame and resizing per face (the reference's
        ``face_crop``, kept in :mod:`talkset.annotators.light_asd` as the reference): the same
        crops within one grey level, and a cost that does not grow with the frame size per
        face. Returns one uint8 (F_i, 112, 112) array per track."""
        import cv2

        want: dict[int, list[tuple[int, int]]] = {}
        geo = []
        crops = []
        for i, tr in enumerate(tracks):
            geo.append(light_asd.smooth_boxes(tr.boxes))
            crops.append(np.zeros((len(tr.frame_idx), light_asd.FACE_SIZE, light_asd.FACE_SIZE), np.uint8))
            for j, f in enumerate(np.asarray(tr.frame_idx).tolist()):
                want.setdefault(int(f), []).append((i, j))
        last = max(want)
        seen = set()
        for k, _t, img in media.iter_frames(video_path):
            if k > last:
                break
            if k not in want:
                continue
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            for i, j in want[k]:
                cx, cy, s = geo[i][j]
                crops[i][j] = light_asd.face_crop_warp(gray, light_asd.crop_matrix(cx, cy, s, self.crop_scale))
            seen.add(k)
        missing = set(want) - seen
        if missing:
            raise StageError(
                f"{video_path}: face tracks reference frames {min(missing)}..{max(missing)} but the clip "
                f"has only {min(missing)} decodable frames; re-run the faces stage on this clip"
            )
        return crops

    # -- stage ----------------------------------------------------------------------------
    def process(self, task: Clip) -> Clip:
        tracks = task.face_tracks or []
        models = {**task.models, self.name: ", ".join(self.model_info().values())}
        if not tracks:
            return replace(task, speaking={}, models=models)
        for p, what in ((task.video_path, "video_path"), (task.audio_path, "audio_path")):
            if not p or not Path(p).is_file():
                raise StageError(f"clip {task.clip_id}: {what} {p!r} is missing; run the clip stage first", stage=self.name)
        fps = float(task.clip_fps or 25.0)
        if abs(fps - light_asd.VIDEO_FPS) > 1e-3:
            raise StageError(f"clip {task.clip_id}: Light-ASD needs 25 fps clips, got {fps}; re-encode with the clip stage")
        for tr in tracks:
            f = np.asarray(tr.frame_idx)
            b = np.asarray(tr.boxes)
            if len(f) == 0 or b.shape != (len(f), 4) or np.any(np.diff(f) != 1) or f[0] < 0:
                raise StageError(
                    f"clip {task.clip_id}: face track {tr.face_track_id} is malformed (needs consecutive "
                    f"frame_idx and (F, 4) boxes, got {len(f)} frames, boxes {b.shape}); check the faces stage",
                    stage=self.name,
                )
        if self._nets is None:
            self.setup()
        try:
            audio = media.read_audio(task.audio_path, 16000)
        except media.MediaError as exc:
            raise StageError(f"clip {task.clip_id}: {exc}", stage=self.name) from exc
        if len(audio) < 400:
            raise StageError(f"clip {task.clip_id}: {task.audio_path} holds no audio; clips need sound", stage=self.name)

        crops = self.face_crops(task.video_path, tracks)
        mfcc = light_asd.mfcc_100hz(audio)
        starts = [int(tr.frame_idx[0]) for tr in tracks]
        feats = [light_asd.mfcc_for_frames(mfcc, s, len(c)) for s, c in zip(starts, crops)]
        n_frames = max(int(task.num_frames or 0), max(s + len(c) for s, c in zip(starts, crops)))
        vad = self.vad_per_frame(audio, n_frames, fps)
        lt = light_asd.score_tracks(self._nets["talkset"], feats, crops, self.batch_frames)
        la = light_asd.score_tracks(self._nets["ava"], feats, crops, self.batch_frames)

        out = {}
        for tr, s, c, t, a in zip(tracks, starts, crops, lt, la):
            v = vad[s : s + len(c)]
            out[int(tr.face_track_id)] = SpeakingTrack(
                face_track_id=int(tr.face_track_id),
                frame_idx=np.asarray(tr.frame_idx, dtype=np.int32),
                asd_logit_talkset=t.astype(np.float32),
                asd_logit_ava=a.astype(np.float32),
                vad_prob=v.astype(np.float32),
                speaking_score=fuse(t, a, v, self.smooth_frames, self.vad_threshold),
            )
        return replace(task, speaking=out, models=models)

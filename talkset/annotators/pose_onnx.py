"""Top-down whole-body pose from an ONNX SimCC model (RTMW, DWPose, RTMPose-wholebody) with onnxruntime.

Backend ``onnx`` of the pose stage (issue 5). The models users run on GPU nodes, e.g. DWPose's
``dw-ll_ucoco_384.onnx`` (Yang et al., ICCVW 2023) or RTMW / RTMPose-wholebody (Jiang et al., 2023)
exported by mmdeploy, all share one signature: input ``(N, 3, H, W)`` float32 (H x W = 384 x 288 or
256 x 192), outputs ``simcc_x`` ``(N, K, W * r)`` and ``simcc_y`` ``(N, K, H * r)`` with K = 133
and split ratio r = 2.0. No such checkpoint ships with talkset; pass its path.

Preprocessing (mmpose ``TopdownAffine`` / rtmlib, facts from their public code): box ->
centre and scale = box size x 1.25, scale widened or heightened to the model's aspect W/H; an
axis-aligned affine maps the ``scale`` rectangle around the centre onto the W x H input
(``cv2.warpAffine``, bilinear); BGR -> RGB; ``(x - mean) / std`` with ImageNet mean
(123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375); NCHW float32.

Decoding (mmpose ``get_simcc_maximum``): per keypoint the argmax of each axis, divided by the split
ratio, gives input pixels; the score is the *smaller* of the two maxima; a score <= 0 marks the
keypoint as not found (score 0 here). Input pixels go back to the frame through the inverse affine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from talkset.weights import WeightsNotFound

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0

WHAT = (
    "a whole-body SimCC pose model exported to ONNX (RTMW, DWPose dw-ll_ucoco_384.onnx, or "
    "RTMPose-wholebody; input (N,3,384,288) or (N,3,256,192), outputs simcc_x/simcc_y with 133 "
    "keypoints)"
)


def box_to_center_scale(box: Sequence[float], aspect: float, padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
    """(x1, y1, x2, y2) px -> centre (2,) and scale (2,) in px: the box size x ``padding``, then the
    shorter side widened so that scale_w / scale_h == ``aspect`` (model input W / H)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0], dtype=np.float64)
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    if w > h * aspect:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float64)


def warp_matrix(center: np.ndarray, scale: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """2x3 affine taking frame px to model-input px: the ``scale`` rectangle around ``center``
    onto [0, out_w] x [0, out_h] (no rotation; same factor on both axes after the aspect fix)."""
    sx = out_w / scale[0]
    sy = out_h / scale[1]
    return np.array(
        [[sx, 0.0, out_w / 2.0 - sx * center[0]], [0.0, sy, out_h / 2.0 - sy * center[1]]],
        dtype=np.float64,
    )


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = SIMCC_SPLIT_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, Wx), (N, K, Wy) -> locations (N, K, 2) in model-input px, scores (N, K).

    Argmax per axis / ``split_ratio``; score = min of the two maxima (mmpose); locations of
    keypoints with score <= 0 are set to -1.
    """
    sx = np.asarray(simcc_x, dtype=np.float32)
    sy = np.asarray(simcc_y, dtype=np.float32)
    if sx.ndim == 2:
        sx, sy = sx[None], sy[None]
    locs = np.stack([np.argmax(sx, axis=-1), np.argmax(sy, axis=-1)], axis=-1).astype(np.float32)
    vals = np.minimum(sx.max(axis=-1), sy.max(axis=-1))
    locs /= float(split_ratio)
    locs[vals <= 0] = -1.0
    return locs, vals


class OnnxWholeBody:
    """A SimCC whole-body ONNX model run top-down on person boxes.

    ``model``: path (or bare file name resolved by :func:`talkset.weights.resolve`) of the ONNX
    file; a missing file raises :class:`talkset.weights.WeightsNotFound` naming the path.
    ``device``: "auto" (CUDA execution provider when onnxruntime has it, else CPU), "cuda" or
    "cpu". ``split_ratio``: SimCC bins per input pixel (2.0 for RTMW / DWPose / RTMPose).
    """

    def __init__(self, model: str | os.PathLike, device: str = "auto", split_ratio: float = SIMCC_SPLIT_RATIO,
                 threads: int = 1):
        import onnxruntime as ort

        from talkset.weights import resolve

        if model is None:
            raise WeightsNotFound(f"no ONNX pose model given: pass the path of {WHAT} (the pose stage's `model` option)")
        self.path = Path(resolve(model, what=WHAT))
        avail = ort.get_available_providers()
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device in ("auto", "cuda") or str(device).startswith("cuda"):
            if "CUDAExecutionProvider" in avail:
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            elif device == "auto":
                providers = ["CPUExecutionProvider"]
            else:
                raise RuntimeError(
                    f"device={device!r} asked for CUDA but this onnxruntime has only {avail}; "
                    "install onnxruntime-gpu or use device='cpu'"
                )
        else:
            raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self.providers = self.session.get_providers()
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or not isinstance(shape[2], int) or not isinstance(shape[3], int):
            raise ValueError(f"{self.path}: expected an input of shape (N, 3, H, W) with fixed H, W; got {shape}")
        self.input_h, self.input_w = int(shape[2]), int(shape[3])
        self.fixed_batch = isinstance(shape[0], int) and shape[0] > 0
        outs = [o.name for o in self.session.get_outputs()]
        if len(outs) < 2:
            raise ValueError(f"{self.path}: expected two outputs (simcc_x, simcc_y), got {outs}")
        self.output_names = outs[:2]
        self.split_ratio = float(split_ratio)

    @property
    def version(self) -> str:
        import onnxruntime as ort

        return f"{self.path.name} ({self.input_w}x{self.input_h}, onnxruntime {ort.__version__}, {self.providers[0]})"

    def preprocess(self, frame: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """One box -> (CHW float32 input, 2x3 frame->input affine)."""
        import cv2

        c, s = box_to_center_scale(box, self.input_w / self.input_h)
        m = warp_matrix(c, s, self.input_w, self.input_h)
        img = cv2.warpAffine(frame, m, (self.input_w, self.input_h), flags=cv2.INTER_LINEAR)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)
        img = (img - MEAN) / STD
        return np.ascontiguousarray(img.transpose(2, 0, 1)), m

    def __call__(self, frame: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Keypoints for every box (x1, y1, x2, y2 px) of ``frame`` (HxWx3 uint8 BGR).

        Returns float32 (N, K, 3) ``[x px, y px, score]`` in frame pixels; K is the model's (133
        for whole-body models); keypoints with score <= 0 are all 0.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 133, 3), dtype=np.float32)
        x, mats = self.prepare(frame, boxes)
        return self.infer(x, mats)

    def prepare(self, frame: np.ndarray, boxes: Sequence[Sequence[float]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """The network inputs of ``boxes`` in ``frame``: float32 (N, 3, H, W) and N 2x3 affines.

        Crops of several frames can be concatenated and run as one batch by :meth:`infer`
        (the pose stage does so across frames)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 3, self.input_h, self.input_w), dtype=np.float32), []
        batch, mats = zip(*(self.preprocess(frame, b) for b in boxes), strict=True)
        return np.stack(batch), list(mats)

    def infer(self, x: np.ndarray, mats: Sequence[np.ndarray]) -> np.ndarray:
        """Run the network on prepared crops ``x`` (N, 3, H, W) in one batch (one crop at a time for a
        model with a fixed batch of 1); returns float32 (N, K, 3) in the crops' frame pixels."""
        if len(x) == 0:
            return np.zeros((0, 133, 3), dtype=np.float32)
        if self.fixed_batch:
            outs = [self.session.run(self.output_names, {self.input_name: x[i : i + 1]}) for i in range(len(x))]
            sx = np.concatenate([o[0] for o in outs])
            sy = np.concatenate([o[1] for o in outs])
        else:
            sx, sy = self.session.run(self.output_names, {self.input_name: x})
        locs, vals = decode_simcc(sx, sy, self.split_ratio)
        out = np.zeros(locs.shape[:2] + (3,), dtype=np.float32)
        for i, m in enumerate(mats):
            inv = np.linalg.inv(np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
            p = locs[i] @ inv[:, :2].T + inv[:, 2]
            out[i, :, :2] = p
            out[i, :, 2] = vals[i]
        out[~(out[..., 2] > 0)] = 0.0
        return out

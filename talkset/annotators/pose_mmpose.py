"""Top-down whole-body pose with mmpose (optional extra ``talkset[mmpose]``, not installed in CI).

Backend ``mmpose`` of the pose stage (issue 5): the same RTMW / DWPose / RTMPose-wholebody models
from an mmpose config + checkpoint, run with ``mmpose.apis.init_model`` + ``inference_topdown`` on
*our* person boxes (``MMPoseInferencer`` 1.3.2 ignores external boxes). mmpose 1.3.2 needs full
mmcv 2.1.0 with compiled ops (``mmcv._ext``; mmcv-lite fails at import), which builds for ~30 min
on 2 cores, and mmengine needs ``setuptools<81``. Everything is imported lazily, so talkset works
without it.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

INSTALL_HINT = (
    "the mmpose pose backend needs the optional extra: `pip install -e .[mmpose]` (mmpose 1.3.2, "
    "mmdet 3.3.0, mmengine, setuptools<81) plus full mmcv 2.1.0 built with its ops, e.g. "
    "`pip install --no-binary mmcv mmcv==2.1.0` (compiles ~30 min on 2 cores; mmcv-lite does not "
    "work). Or use backend='mediapipe' (default) or backend='onnx' with an exported RTMW/DWPose model."
)


def _import_mmpose():
    try:
        import mmpose  # noqa: F401
        from mmpose.apis import inference_topdown, init_model
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} (import failed: {exc})") from exc
    return init_model, inference_topdown


def mmpose_version() -> str:
    import mmpose

    return str(mmpose.__version__)


class MMPoseWholeBody:
    """An mmpose top-down whole-body model on our boxes.

    ``config``: mmpose model config (.py); ``checkpoint``: its weights (.pth), resolved through
    :func:`talkset.weights.resolve` (missing -> WeightsNotFound naming the path). ``device``:
    "auto" (cuda:0 when torch sees a GPU, else cpu), "cpu" or "cuda:N". Raises ImportError with the
    install instructions when mmpose / mmcv are not importable.
    """

    def __init__(self, config: str | os.PathLike, checkpoint: str | os.PathLike, device: str = "auto"):
        init_model, inference_topdown = _import_mmpose()
        from talkset.weights import resolve

        if config is None or checkpoint is None:
            raise ValueError("the mmpose backend needs both `config` (mmpose .py) and `model` (checkpoint .pth)")
        cfg = resolve(config, what="an mmpose model config (.py) for a whole-body top-down model")
        ckpt = resolve(checkpoint, what="an mmpose whole-body checkpoint (.pth), e.g. RTMW or DWPose")
        if device == "auto":
            import torch

            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.checkpoint = ckpt
        self._infer = inference_topdown
        self.model = init_model(str(cfg), str(ckpt), device=device)

    @property
    def version(self) -> str:
        return f"mmpose {mmpose_version()} {self.checkpoint.name}"

    def __call__(self, frame: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """(N, K, 3) float32 ``[x px, y px, score]`` in frame pixels for each box (x1, y1, x2, y2)."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 133, 3), dtype=np.float32)
        samples = self._infer(self.model, frame, boxes, bbox_format="xyxy")
        out = []
        for s in samples:
            inst = s.pred_instances
            kp = np.asarray(inst.keypoints, dtype=np.float32)[0]
            sc = np.asarray(inst.keypoint_scores, dtype=np.float32)[0]
            out.append(np.concatenate([kp, sc[:, None]], axis=1))
        res = np.stack(out)
        res[~(res[..., 2] > 0)] = 0.0
        return res

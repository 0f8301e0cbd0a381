"""Resolve model files from local paths only: nothing is downloaded at run time.

Order: an explicit path (stage option) -> ``$TALKSET_WEIGHTS/<name>`` -> ``../shared/weights``
next to the checkout (the demo and tests). A missing file raises :class:`WeightsNotFound`
naming the path and what belongs there.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# name -> (what it is, where a user gets it)
KNOWN = {
    "yolo11n-pose.pt": (
        "Ultralytics YOLO11n-pose checkpoint (COCO person boxes + 17 body keypoints)",
        "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n-pose.pt",
    ),
    "face_detection_yunet_2026may.onnx": (
        "OpenCV YuNet face detector (ONNX, dynamic input size)",
        "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
    ),
    "light-asd_finetuning_TalkSet.model": (
        "Light-ASD active speaker weights fine-tuned on TalkSet (state dict)",
        "https://github.com/Junhua-Liao/Light-ASD/tree/main/weight (finetuning_TalkSet.model)",
    ),
    "light-asd_pretrain_AVA_CVPR.model": (
        "Light-ASD active speaker weights trained on AVA-ActiveSpeaker (state dict)",
        "https://github.com/Junhua-Liao/Light-ASD/tree/main/weight (pretrain_AVA_CVPR.model)",
    ),
}


class WeightsNotFound(FileNotFoundError):
    """A model file is not on disk. The message names the path and what belongs there."""


def weights_dirs() -> list[Path]:
    """Folders searched for a weights file by name, in order."""
    dirs = []
    env = os.environ.get("TALKSET_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(REPO_ROOT.parent / "shared" / "weights")
    return dirs


def resolve(name_or_path: str | os.PathLike, what: str | None = None) -> Path:
    """Return an existing local path for a model file.

    ``name_or_path`` is either a path (absolute, or relative with a folder part) or a bare file
    name looked up in :func:`weights_dirs`. Raises :class:`WeightsNotFound` otherwise.
    """
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p.resolve()
    tried = [p] if (p.is_absolute() or len(p.parts) > 1) else []
    if not tried:
        for d in weights_dirs():
            cand = d / p.name
            if cand.is_file():
                return cand.resolve()
            tried.append(cand)
    desc, url = KNOWN.get(p.name, (what or "model weights", None))
    hint = f" Get it from {url} and put it there," if url else " Put the file there,"
    raise WeightsNotFound(
        f"model file not found: {tried[0]} (also looked in: {', '.join(map(str, tried[1:])) or '-'}). "
        f"Expected: {desc}.{hint} or set TALKSET_WEIGHTS to the folder holding it, "
        f"or pass its path with the stage option. Nothing is downloaded at run time."
    )

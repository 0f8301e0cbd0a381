"""Process-wide switches that keep every component offline and off the public network.

Call :func:`configure` before importing ultralytics, Prefect or Ray, in the driver and in every
Ray actor. Values already set by the user win.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

OFFLINE_ENV = {
    # ultralytics probes the network at import and pip-installs packages without these.
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "False",
    "YOLO_VERBOSE": "False",
    # Ray: no usage stats.
    "RAY_USAGE_STATS_ENABLED": "0",
    # Prefect: no analytics.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # Prefect starts a temporary API server when no PREFECT_API_URL is set; its default 20 s start-up
    # wait timed out on a loaded CI machine (two kill/resume tests failed with "Timed out while attempting
    # to connect to ephemeral Prefect API server"), so wait longer before giving up.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # Hugging Face libraries never reach a hub at run time.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # Silence TensorFlow Lite / glog chatter from MediaPipe.
    "GLOG_minloglevel": "2",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def configure(threads: int | None = 1) -> None:
    """Set offline switches and (optionally) limit math-library threads.

    ``threads=1`` is what a Ray actor wants on a small machine: with 2 cores oversubscribed a
    small torch step went from 0.09 s to 8 s (../shared/STACK.md).
    """
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        cfg = Path(tempfile.gettempdir()) / "talkset-ultralytics"
        cfg.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    if threads is not None:
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(key, str(threads))
        try:
            import torch

            torch.set_num_threads(threads)
        except Exception:  # torch is optional at this point
            pass
        try:
            import cv2

            cv2.setNumThreads(threads)
        except Exception:
            pass

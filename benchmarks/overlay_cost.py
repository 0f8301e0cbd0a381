"""Cost of the overlay measure's text-change mask against the camera-motion meter it rides on.

Decodes the shared interview (1280x720, 8 s at 25 fps), feeds every 10th frame to a
CameraMotionMeter (which now also computes the text-change mask per pair) and, separately, times
:func:`talkset.stages.overlay.text_change` + packbits on the same 320 px pairs. Prints both per
sampled frame and their ratio, measured in one run (so machine load affects both alike).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/overlay_cost.py
"""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import numpy as np

from talkset import media
from talkset.stages import overlay
from talkset.stages.camera import CameraMotionMeter, _gray_small

CLIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "clips" / "visualvoice_interview.mp4"


def main(path: Path = CLIP, repeats: int = 3) -> None:
    frames = [img for k, _t, img in media.iter_frames(str(path), 0.0, 8.0, fps=25.0) if k % 10 == 0]
    grays = [_gray_small(f)[0] for f in frames]
    meter_s, mask_s = [], []
    for _ in range(repeats):
        meter = CameraMotionMeter(10)
        t = time.process_time()
        for i, f in enumerate(frames):
            meter.add(i * 10, f)
        meter.value()
        meter.overlay_share()
        meter_s.append((time.process_time() - t) / len(frames))
        t = time.process_time()
        for a, b in pairwise(grays):
            np.packbits(overlay.text_change(a, b))
        mask_s.append((time.process_time() - t) / (len(grays) - 1))
    m, k = min(meter_s) * 1e3, min(mask_s) * 1e3
    print(f"{len(frames)} sampled frames of {path.name}: meter (with the mask) {m:.2f} ms CPU per sampled frame, "
          f"text-change mask {k:.2f} ms ({k / m:.1%} of the meter)")


if __name__ == "__main__":
    main()

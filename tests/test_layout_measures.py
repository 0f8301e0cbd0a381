"""Split-screen seams (talkset.stages.layout) on the shared split screens and single pictures."""

from __future__ import annotations

import numpy as np
from conftest import clip

from talkset import media
from talkset.stages import layout
from talkset.stages.camera import _gray_small


def seams_of(path, start_s: float = 0.0, dur_s: float = 4.0, boxes=None):
    profiles, width = [], 0
    for k, _t, img in media.iter_frames(str(path), start_s, start_s + dur_s, fps=25.0):
        if k % 10 == 0:
            gray, _s = _gray_small(img)
            width = gray.shape[1]
            profiles.append(layout.column_step_share(gray))
    return layout.find_seams(profiles, boxes), width


def test_shared_split_screens_have_one_central_seam():
    for name in ("visualvoice_interview.mp4", "clearervoice_tse_001.avi"):
        seams, w = seams_of(clip(name))
        assert len(seams) == 1, (name, seams)
        assert abs(seams[0][0] - w / 2) <= 0.02 * w, (name, seams)
        assert seams[0][1] >= 0.9
        assert layout.panels(w, seams) == [(0, seams[0][0]), (seams[0][0], w)]


def test_measure_layout_per_clip():
    lay = layout.measure_layout(str(clip("clearervoice_tse_001.avi")), 0.0, 4.0)
    assert lay.layout == "split" and len(lay.seams) == 1 and abs(lay.seams[0] - 0.5) <= 0.02
    assert layout.measure_layout(str(clip("visualvoice_noisy_restaurant.mp4")), 0.0, 4.0) == layout.Layout("single")


def test_single_pictures_have_none():
    for name, start in (("visualvoice_noisy_restaurant.mp4", 0.0), ("dvscripts_blackjournal.mp4", 20.0)):
        seams, w = seams_of(clip(name), start)
        assert seams == [], (name, seams)
        assert layout.panels(w, seams) == [(0, w)]


def test_a_person_crossing_the_column_vetoes_it():
    seams, _w = seams_of(clip("clearervoice_tse_001.avi"))
    c = seams[0][0]
    crossing = [np.array([[c - 40, 10, c + 40, 170]])] * 10
    assert seams_of(clip("clearervoice_tse_001.avi"), boxes=crossing)[0] == []
    beside = [np.array([[c + 5, 10, c + 100, 170]])] * 10
    assert seams_of(clip("clearervoice_tse_001.avi"), boxes=beside)[0] == seams
    assert layout.find_seams([]) == []

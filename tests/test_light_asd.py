"""Light-ASD (talkset/annotators/light_asd.py) on the real checkpoints and a real face track."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
import torch
from conftest import WEIGHTS, clip

from talkset import media
from talkset.annotators import light_asd
from talkset.annotators.light_asd import LightASD

CKPTS = ["light-asd_finetuning_TalkSet.model", "light-asd_pretrain_AVA_CVPR.model"]


@pytest.fixture(scope="module")
def nets():
    return {n: LightASD.from_checkpoint(WEIGHTS / n) for n in CKPTS}


@pytest.mark.parametrize("name", CKPTS)
def test_checkpoint_loads_strictly(name):
    state = torch.load(WEIGHTS / name, weights_only=True, map_location="cpu")
    net = LightASD()
    wanted = {k for k in state if not k.startswith("lossV.")}
    assert set(net.state_dict()) == wanted  # every model.* and lossAV.FC.* key, nothing else
    assert any(k.startswith("lossV.") for k in state)
    loaded = LightASD.from_checkpoint(WEIGHTS / name)
    assert not loaded.training
    torch.testing.assert_close(loaded.lossAV.FC.weight, state["lossAV.FC.weight"])


def test_missing_checkpoint_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="Light-ASD checkpoint not found"):
        LightASD.from_checkpoint(tmp_path / "nope.model")


def test_output_shapes_and_input_check(nets):
    net = nets[CKPTS[0]]
    v = torch.full((2, 12, 112, 112), 128.0)
    a = torch.zeros((2, 48, 13))
    with torch.inference_mode():
        assert net(a, v).shape == (2, 12)
        assert net.class_logits(a, v).shape == (2, 12, 2)
        with pytest.raises(ValueError, match=r"\(B, 4T, 13\)"):
            net(a[:, :40], v)


def _face_crops_first_seconds(tmp_path, seconds=4.0):
    """YuNet faces on a 4 s cut of the split-screen interview, one face track per half."""
    mp4 = tmp_path / "vi4.mp4"
    subprocess.run(
        [media.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip("visualvoice_interview.mp4")),
         "-t", str(seconds), "-an", "-r", "25", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", str(mp4)],
        check=True,
    )  # fmt: skip
    det, boxes, grays = None, {0: [], 1: []}, []
    for _k, _t, img in media.iter_frames(mp4):
        small = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        if det is None:
            det = cv2.FaceDetectorYN.create(str(WEIGHTS / "face_detection_yunet_2026may.onnx"), "", small.shape[1::-1], 0.8, 0.3, 5000)
        _, faces = det.detect(small)
        assert faces is not None
        for side in (0, 1):
            f = [r for r in faces if (r[0] + r[2] / 2 > small.shape[1] / 2) == bool(side)]
            assert f, "a face on each half of the split screen in every frame"
            x, y, w, h = max(f, key=lambda r: r[-1])[:4] * 2
            boxes[side].append([x, y, x + w, y + h])
        grays.append(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    crops = []
    for side in (0, 1):
        geo = light_asd.smooth_boxes(np.array(boxes[side]))
        crops.append(np.stack([light_asd.face_crop(g, *geo[i]) for i, g in enumerate(grays)]))
    audio = media.read_audio(clip("visualvoice_interview.mp4"), 16000, 0.0, seconds)
    return crops, light_asd.mfcc_100hz(audio)


def test_real_face_tracks(nets, tmp_path):
    crops, mfcc = _face_crops_first_seconds(tmp_path)
    F = len(crops[0])
    assert F == 100 and crops[0].shape == (F, 112, 112) and crops[0].dtype == np.uint8
    assert mfcc.shape[1] == 13 and abs(len(mfcc) - 4 * F) <= 2
    feats = [light_asd.mfcc_for_frames(mfcc, 0, len(c)) for c in crops]

    out = {n: light_asd.score_tracks(net, feats, crops) for n, net in nets.items()}
    talk, ava = out[CKPTS[0]], out[CKPTS[1]]
    for side in (0, 1):
        assert talk[side].shape == (F,) and np.isfinite(talk[side]).all() and np.isfinite(ava[side]).all()
        # the two checkpoints are different models: clearly different logits on the same input
        assert np.abs(talk[side] - ava[side]).mean() > 0.5
    # both people talk in the first seconds of the clip (measured: TalkSet mean > +4 for both)
    assert talk[0].mean() > 2 and talk[1].mean() > 2

    # batched (padded, unequal lengths) == one track at a time
    net = nets[CKPTS[0]]
    lens = [F, 61]
    batched = light_asd.score_tracks(net, [feats[0], feats[1][: 4 * lens[1]]], [crops[0], crops[1][: lens[1]]])
    single = [light_asd.score_tracks(net, [feats[0]], [crops[0]])[0],
              light_asd.score_tracks(net, [feats[1][: 4 * lens[1]]], [crops[1][: lens[1]]])[0]]  # fmt: skip
    for b, s, n in zip(batched, single, lens):
        assert b.shape == (n,)
        np.testing.assert_allclose(b, s, atol=1e-4)
    np.testing.assert_allclose(batched[0], talk[0], atol=1e-4)


def test_one_warp_crop_equals_reference_crop():
    """The speaking stage's crop (one cv2.warpAffine, light_asd.crop_matrix) against the
    reference's pad-resize-centre crop (light_asd.face_crop) on a real 720p frame, for faces
    inside, at the edge of and partly outside the frame. Measured: mean |difference| <= 0.2 grey
    levels, max 2."""
    img = next(im for k, _t, im in media.iter_frames(clip("visualvoice_interview.mp4")) if k == 30)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    for cx, cy, s in [(394, 250, 90), (892, 260, 93), (20, 30, 60), (1270, 700, 40), (640.7, 360.2, 17.3)]:
        ref = light_asd.face_crop(gray, cx, cy, s)
        fast = light_asd.face_crop_warp(gray, light_asd.crop_matrix(cx, cy, s))
        d = np.abs(ref.astype(int) - fast.astype(int))
        assert fast.shape == (112, 112) and fast.dtype == np.uint8
        assert d.mean() < 0.5 and d.max() <= 3, (cx, cy, s, d.mean(), d.max())


def test_folded_inference_path_equals_reference(nets, tmp_path):
    """The inference path (BatchNorm folded into 2D convolutions) gives the layer-by-layer
    network's logits on real crops and a padded batch: max |difference| measured 5e-7."""
    crops, mfcc = _face_crops_first_seconds(tmp_path, seconds=2.0)
    feats = [light_asd.mfcc_for_frames(mfcc, 0, len(c)) for c in crops]
    v = torch.from_numpy(np.stack([crops[0], crops[1]]).astype(np.float32))
    a = torch.from_numpy(np.stack(feats))
    lengths = torch.tensor([len(crops[0]), 31])
    x = ((v / 255.0 - light_asd.VISUAL_MEAN) / light_asd.VISUAL_STD).unsqueeze(1)
    mask = torch.arange(v.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    for net in nets.values():
        ve = net.model.visualEncoder
        with torch.no_grad():
            fast = net(a, v, lengths)
            np.testing.assert_allclose(ve(x, mask).numpy(), ve.forward_reference(x, mask).numpy(), atol=1e-4)
        # the training path (grad enabled) is the layer-by-layer one
        assert ve(x[:, :, :4], None).requires_grad
        for j, n in enumerate(lengths.tolist()):
            single = light_asd.score_tracks(net, [feats[j][: 4 * n]], [crops[j][:n]])[0]
            np.testing.assert_allclose(fast[j, :n].numpy(), single, atol=1e-4)


def test_onnxruntime_visual_encoder_gives_the_torch_logits(tmp_path):
    """LightASD.use_onnxruntime (the CPU path of the speaking stage) on real face crops: the same
    logits as PyTorch, per track and for tracks of unequal lengths."""
    crops, mfcc = _face_crops_first_seconds(tmp_path)
    feats = [light_asd.mfcc_for_frames(mfcc, 0, len(c)) for c in crops]
    crops = [crops[0], crops[1][:61]]
    feats = [feats[0], feats[1][: 4 * 61]]
    for name in CKPTS:
        ref = LightASD.from_checkpoint(WEIGHTS / name)
        fast = LightASD.from_checkpoint(WEIGHTS / name)
        fast.use_onnxruntime(threads=1)
        assert ref.ort_visual is None and fast.ort_visual is not None
        want = light_asd.score_tracks(ref, feats, crops)
        got = light_asd.score_tracks(fast, feats, crops)
        for w, g in zip(want, got):
            assert g.shape == w.shape and np.abs(w).max() > 1.0  # real logits, not zeros
            np.testing.assert_allclose(g, w, atol=1e-4)

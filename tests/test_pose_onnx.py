"""The ONNX SimCC backend end to end on a small exported network with known outputs.

No RTMW / DWPose checkpoint exists here, so the test exports a fixed torch network with the same
signature (input (1, 3, 384, 288) -> simcc_x (1, 133, 576), simcc_y (1, 133, 768)) whose peaks sit
where the brightest red pixel of the input is, shifted by a known per-keypoint offset.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from talkset.annotators.pose_onnx import (  # noqa: E402
    OnnxWholeBody,
    box_to_center_scale,
    decode_simcc,
)
from talkset.weights import WeightsNotFound  # noqa: E402

K = 133
DX = np.array([(k % 7) - 3 for k in range(K)])  # model-input px offsets per keypoint
DY = np.array([(k // 7) % 5 - 2 for k in range(K)])
AX = np.linspace(0.2, 1.0, K)  # x-axis peak scale per keypoint
AY = np.linspace(1.0, 0.5, K)  # y-axis peak scale: the score is min(AX, AY) x peak


class SpotNet(torch.nn.Module):
    """SimCC outputs peaking at (brightest input column + DX_k, brightest row + DY_k), split ratio 2,
    on input channel 0 (R after the backend's BGR->RGB)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("ax", torch.tensor(AX, dtype=torch.float32).view(1, K, 1))
        self.register_buffer("ay", torch.tensor(AY, dtype=torch.float32).view(1, K, 1))

    def forward(self, x):
        c = x[:, 0]  # (N, H, W)
        px = c.amax(dim=1).repeat_interleave(2, dim=-1)  # (N, 2W)
        py = c.amax(dim=2).repeat_interleave(2, dim=-1)  # (N, 2H)
        sx = torch.stack([torch.roll(px, shifts=int(2 * DX[k]), dims=-1) for k in range(K)], dim=1)
        sy = torch.stack([torch.roll(py, shifts=int(2 * DY[k]), dims=-1) for k in range(K)], dim=1)
        return sx * self.ax, sy * self.ay


@pytest.fixture(scope="module")
def spot_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "spotnet_384x288.onnx"
    net = SpotNet().eval()
    torch.onnx.export(
        net, (torch.zeros(1, 3, 384, 288),), str(path), input_names=["input"],
        output_names=["simcc_x", "simcc_y"], opset_version=17, dynamo=False,
        dynamic_axes={"input": {0: "batch"}, "simcc_x": {0: "batch"}, "simcc_y": {0: "batch"}},
    )
    return path


def test_decode_simcc_takes_argmax_over_ratio_and_min_score():
    sx = np.zeros((1, 2, 10), np.float32)
    sy = np.zeros((1, 2, 8), np.float32)
    sx[0, 0, 7], sy[0, 0, 3] = 0.9, 0.4
    sx[0, 1, 2], sy[0, 1, 5] = -0.1, -0.2  # not found
    locs, vals = decode_simcc(sx, sy, 2.0)
    assert np.allclose(locs[0, 0], [3.5, 1.5]) and np.isclose(vals[0, 0], 0.4)
    assert np.all(locs[0, 1] == -1) and vals[0, 1] <= 0


def test_center_scale_fixes_aspect():
    c, s = box_to_center_scale((100, 50, 300, 450), 288 / 384)
    assert np.allclose(c, [200, 250])
    assert np.isclose(s[1], 500) and np.isclose(s[0] / s[1], 0.75)
    c, s = box_to_center_scale((0, 0, 400, 100), 0.75)
    assert np.isclose(s[0], 500) and np.isclose(s[0] / s[1], 0.75)


@pytest.mark.parametrize("box", [(180.0, 90.0, 420.0, 450.0), (250.0, 200.0, 330.0, 330.0)])
def test_onnx_backend_end_to_end(spot_onnx, box):
    est = OnnxWholeBody(spot_onnx, device="auto")
    assert (est.input_h, est.input_w) == (384, 288)
    assert est.providers[-1] == "CPUExecutionProvider"
    frame = np.zeros((480, 640, 3), np.uint8)
    spot = np.array([301.0, 262.0])
    yy, xx = np.mgrid[0:480, 0:640]
    blob = np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / (2 * 2.0**2))
    frame[..., 2] = np.round(255 * blob).astype(np.uint8)  # red (BGR) Gaussian spot, R only
    frame[120, 200] = (255, 0, 0)  # pure blue distractor: wins only if BGR->RGB were skipped
    kp = est(frame, [box])
    assert kp.shape == (1, K, 3) and kp.dtype == np.float32

    # expected: spot + per-keypoint offset in input px, mapped back by the box's px-per-input-px
    _, s = box_to_center_scale(box, 288 / 384)
    per_px = s[0] / 288.0
    expect = spot[None] + np.stack([DX, DY], axis=1) * per_px
    err = np.abs(kp[0, :, :2] - expect)
    assert err.max() <= max(1.0, 0.6 * per_px), err.max()
    # score = min of the two axis maxima: proportional to min(AX, AY) with the warped spot's
    # (bilinear-blurred) normalized R value as factor, at most that of a full 255 pixel
    ratio = kp[0, :, 2] / np.minimum(AX, AY)
    assert np.allclose(ratio, ratio[0], rtol=1e-4)
    assert 0 < ratio[0] <= (255 - 123.675) / 58.395 + 1e-4

    # two boxes in one batch: each decoded through its own affine
    kp2 = est(frame, [box, (0.0, 0.0, 640.0, 480.0)])
    assert kp2.shape == (2, K, 3)
    assert np.allclose(kp2[0], kp[0], atol=1e-3)
    _, s2 = box_to_center_scale((0, 0, 640, 480), 0.75)
    expect2 = spot[None] + np.stack([DX, DY], axis=1) * (s2[0] / 288.0)
    assert np.abs(kp2[1, :, :2] - expect2).max() <= 0.6 * s2[0] / 288.0 + 0.5
    assert (kp2[1, :, 2] > 0).all()

    # nothing red: every channel-0 maximum is negative -> no keypoint found, all zeros
    none = est(np.zeros_like(frame), [box])
    assert not none.any()


def test_missing_model_is_a_clear_error(tmp_path):
    missing = tmp_path / "dw-ll_ucoco_384.onnx"
    with pytest.raises(WeightsNotFound) as ei:
        OnnxWholeBody(missing)
    msg = str(ei.value)
    assert str(missing) in msg and "DWPose" in msg and "RTMW" in msg
    with pytest.raises(WeightsNotFound, match="ONNX pose model"):
        OnnxWholeBody(None)


def test_pose_stage_with_the_onnx_backend(spot_onnx, tmp_path):
    """PoseStage(backend="onnx") on a short clip: keypoints follow a moving spot, frame by frame,
    and the detector's body keypoints replace the model's where prefer_yolo_body is set."""
    import cv2

    from talkset.items import Clip, PersonTrack, Shot, Source
    from talkset.stages.pose import PoseStage

    path = tmp_path / "spot.avi"
    spots = [(300.0, 250.0), (320.0, 240.0), (340.0, 260.0)]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (640, 480))
    yy, xx = np.mgrid[0:480, 0:640]
    for sx, sy in spots:
        f = np.zeros((480, 640, 3), np.uint8)
        f[..., 2] = np.round(255 * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * 3.0**2))).astype(np.uint8)
        vw.write(f)
    vw.release()
    box = np.array([200.0, 100.0, 440.0, 420.0], np.float32)
    body = np.zeros((3, 17, 3), np.float32)
    body[:, 5] = (111.0, 222.0, 0.9)  # a confident detector keypoint (left shoulder)
    tr = PersonTrack(7, np.arange(3, dtype=np.int32), np.tile(box, (3, 1)), np.ones(3, np.float32), body)
    video = Source(url=str(path), source_id="spot", video_path=str(path))
    shot = Shot("spot", 0, 0, 3, 0.0, 0.12)
    task = Clip(source=video, shot=shot, clip_id="spot-s0000", clip_fps=25.0, video_path=str(path), person_tracks=[tr])

    stage = PoseStage(backend="onnx", model=str(spot_onnx), prefer_yolo_body=True)
    result = stage.process(task)
    out = result.poses[7]
    assert result.models["pose"].startswith("onnx spotnet_384x288.onnx")
    kp = out.keypoints
    assert kp.shape == (3, 133, 3) and np.array_equal(out.frame_idx, [0, 1, 2])
    _, s = box_to_center_scale(box, 288 / 384)
    per_px = s[0] / 288.0
    for k, spot in enumerate(spots):
        expect = np.array(spot)[None] + np.stack([DX, DY], axis=1) * per_px
        got = kp[k, 17:, :2]  # outside the body slots the model's points stay
        assert np.abs(got - expect[17:]).max() <= 1.5, (k, np.abs(got - expect[17:]).max())
        assert np.allclose(kp[k, 5], (111.0, 222.0, 0.9))  # detector's confident point wins
        assert np.abs(kp[k, 6, :2] - expect[6]).max() <= 1.5  # detector score 0 -> model's point
    # the crops of the 3 frames ran as one batch (batch_crops=32); one crop per run gives the same
    one_by_one = PoseStage(backend="onnx", model=str(spot_onnx), prefer_yolo_body=True, batch_crops=1).process(task)
    np.testing.assert_allclose(one_by_one.poses[7].keypoints, kp, atol=1e-4)

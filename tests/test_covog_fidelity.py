"""CovOG against the seed's code (issue 13), on the tiny config and the paper config on the meta device.

What these tests show: the network is wired as the seed's code wires it - the pose adaptor is
summed over people under their instance masks, IADs sit after the configured down / up blocks with
the seed's channel widths at paper size, face masks follow the seed's landmark rule, motion frames
are reset to their clean latents after every step and overlapping windows are averaged, guidance
combines the two branches as ``u + s (c - u)``, the AnimateAnyone variant has no audio or pose
adaptor parameters and reads neither, gradient checkpointing gives the same gradients, bf16 runs.
What they cannot show: that the paper-size model, trained, reproduces the paper's figures (no SD 1.5
weights, no GPU here); video quality; the seed's deeper audio blocks (1-3 layers per placement, one here).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_covog_model import make_batch, randomize_zero_inits

from talkset.covog.config import IAD_PLACEMENTS, config_from_dict, load_config
from talkset.covog.face_mask import box_face_masks, face_masks, landmark_face_box
from talkset.covog.model import CovOG
from talkset.covog.multi_pose_encoder import sum_over_people

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture(scope="module")
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    randomize_zero_inits(model)
    model.eval()
    return model


def _kp133(points: dict[int, tuple[float, float]]) -> np.ndarray:
    kp = np.zeros((133, 3), np.float32)
    for i, (x, y) in points.items():
        kp[i] = (x, y, 0.9)
    return kp


def test_seed_face_mask_from_landmarks_kept_inside_the_person():
    # shoulders 5 (person's left, image right) and 6; jaw ends 23 / 39, chin 31, nose tip 53
    kp = _kp133({5: (80, 60), 6: (40, 60), 23: (45, 20), 31: (60, 40), 39: (75, 20), 53: (60, 28)})
    # face box (45, 20, 75, 40) scaled 1.4 x 1.6 about (60, 30) -> (39, 14, 81, 46); the upper-body
    # box (32, -2.4, 88, 74.4) contains it
    np.testing.assert_allclose(landmark_face_box(kp), [39, 14, 81, 46], atol=1e-4)
    # kept inside the person's instance box
    np.testing.assert_allclose(landmark_face_box(kp, np.array([50, 0, 100, 100])), [50, 14, 81, 46], atol=1e-4)
    # low-score landmarks are ignored; the 59-keypoint subset (no face landmarks) falls back to
    # nose + ears; nothing visible -> NaN -> empty mask
    only_head = _kp133({0: (60, 30), 3: (70, 25), 4: (50, 25), 5: (80, 60), 6: (40, 60)})
    from talkset.wholebody import to_subset_59

    b59 = landmark_face_box(to_subset_59(only_head))
    np.testing.assert_allclose(b59, landmark_face_box(only_head))
    assert b59[0] < 50 and b59[2] > 70 and b59[1] < 25 and b59[3] > 30
    assert np.isnan(landmark_face_box(np.zeros((133, 3), np.float32))).all()
    # masks: (F, P) leading dims, clipped to the image, {0, 1}
    kps = np.stack([np.stack([kp, np.zeros_like(kp)])] * 3)  # (3, 2, 133, 3)
    m = face_masks((48, 80), keypoints=kps)
    assert m.shape == (3, 2, 48, 80) and m.dtype == np.float32
    assert m[:, 1].sum() == 0 and m[0, 0, 14:46, 39:81].min() == 1 and m[0, 0].sum() == 32 * 41
    boxes = np.array([[[10, 5, 20.5, 15]]], np.float32)
    np.testing.assert_array_equal(face_masks((48, 80), face_boxes=boxes, kind="box"), box_face_masks(boxes, (48, 80)))
    assert box_face_masks(boxes, (48, 80)).sum() == 10 * 11
    with pytest.raises(ValueError, match="kind"):
        face_masks((48, 80), keypoints=kps, kind="lips")
    with pytest.raises(ValueError, match="133"):
        landmark_face_box(np.zeros((17, 3)))


def test_pose_adaptor_mpe_sums_people_under_their_instance_masks(tiny_model, tiny_cfg, tmp_path):
    model = tiny_model
    torch.save(model.pose_adaptor.state_dict(), tmp_path / "pose_adaptor.pth")
    loaded = CovOG.from_config("tiny", weights={"pose_adaptor": str(tmp_path / "pose_adaptor.pth")})
    assert torch.equal(loaded.pose_adaptor.conv_out.weight, model.pose_adaptor.conv_out.weight)
    with pytest.raises(ValueError, match="no pose adaptor"):
        CovOG.from_config("tiny_animateanyone", weights={"pose_adaptor": str(tmp_path / "pose_adaptor.pth")})
    b, p, h, w = 1, 3, tiny_cfg.height, tiny_cfg.width
    g = torch.Generator().manual_seed(1)
    ref_pose = torch.rand(b, 3, h, w, generator=g)
    inst = torch.zeros(b, p, 1, h, w)
    for i in range(p):
        inst[:, i, :, :, i * w // p:(i + 1) * w // p] = 1
    people = torch.tensor([[True, True, False]])
    batch = {"ref_pose": ref_pose, "ref_pose_people": ref_pose[:, None] * inst, "people_mask": people}
    with torch.no_grad():
        got = model.adaptor_features(batch)
        want = sum(model.pose_adaptor(batch["ref_pose_people"][:, i]) for i in range(2))  # padded slot 2 left out
        joint = model.pose_adaptor(ref_pose)
        swapped = model.adaptor_features({**batch, "ref_pose_people": batch["ref_pose_people"][:, [1, 0, 2]]})
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(swapped, got)
    assert (got - joint).abs().max() > 1e-3  # not the joint image: conv padding / biases differ per person
    torch.testing.assert_close(sum_over_people(model.pose_adaptor, batch["ref_pose_people"][:, :2]), want)
    # the full model feeds it to ReferenceNet: changing one person's reference pose changes the prediction
    full = make_batch(tiny_cfg, p=3)
    full["ref_pose_people"] = full["ref_pose"][:, None] * inst
    with torch.no_grad():
        a = model.noise_prediction(full, 2, generator=torch.Generator().manual_seed(2))[0]
        rp = full["ref_pose_people"].clone()
        rp[:, 0] = rp[:, 0].flip(-1)
        c = model.noise_prediction({**full, "ref_pose_people": rp}, 2, generator=torch.Generator().manual_seed(2))[0]
    assert (a - c).abs().max() > 1e-5


def test_iad_placement_is_a_config_list(tiny_model, tiny_cfg):
    # paper: the seed's placement, after down blocks 0-2 and up blocks 0-1, with SD 1.5's widths
    with torch.device("meta"):
        paper = CovOG(load_config("paper"))
    iad = load_config("paper").iad
    assert (iad.down_blocks, iad.up_blocks) == IAD_PLACEMENTS["seed"] == ([0, 1, 2], [0, 1])
    widths = {k: d.channels for k, d in paper.audio_drivers.items()}
    assert widths == {"down0": 320, "down1": 640, "down2": 1280, "0": 1280, "1": 1280}
    # pose guider and adaptor: the seed's (16, 32, 96, 256) -> 320
    for guider in (paper.pose_guider, paper.pose_adaptor):
        assert [guider.conv_in.out_channels] + [b.out_channels for b in guider.blocks[1::2]] == [16, 32, 96, 256]
        assert guider.conv_out.out_channels == 320
    # talkset's earlier placement stays an option
    up = config_from_dict({"base": "paper", "iad": {"down_blocks": [], "up_blocks": [0, 1, 2, 3]}})
    with torch.device("meta"):
        assert sorted(CovOG(up).audio_drivers) == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="down_blocks"):
        config_from_dict({"base": "tiny", "iad": {"down_blocks": [2]}})
    # tiny: the drivers run where configured, on hidden states of their width
    seen = []
    hooks = [d.register_forward_hook(lambda m, i, o, k=k: seen.append((k, tuple(i[0].shape[1:]))))
             for k, d in tiny_model.audio_drivers.items()]
    try:
        with torch.no_grad():
            tiny_model.noise_prediction(make_batch(tiny_cfg), 2)
    finally:
        for hk in hooks:
            hk.remove()
    assert seen == [("down0", (32, 12, 20)), ("0", (64, 24, 40)), ("1", (32, 24, 40))]


PER_FRAME = ("pose_people", "pose_joint", "audio", "speaking", "face_masks", "target")


def _frames(batch: dict, a: int, b: int) -> dict:
    return {key: (v[:, a:b] if key in PER_FRAME else v) for key, v in batch.items()}


def test_motion_frames_reset_to_clean_latents_and_overlaps_averaged(tiny_model, tiny_cfg):
    model = tiny_model
    k, L = tiny_cfg.motion_frames, tiny_cfg.num_frames  # 2 of 4
    batch = make_batch(tiny_cfg, f=6, p=2)
    mf = torch.rand(1, k, 3, tiny_cfg.height, tiny_cfg.width, generator=torch.Generator().manual_seed(3)) * 2 - 1
    win = _frames(batch, 0, L)
    out = model.generate_window(win, mf, num_steps=3, generator=torch.Generator().manual_seed(0))
    # the tiny latent is exactly invertible: the first k frames are the clean motion frames, unchanged
    torch.testing.assert_close(out[:, :k], mf.clamp(-1, 1), atol=1e-6, rtol=0)
    # their own audio is kept (changing it changes the generated frames through the motion modules / IAD)
    other = model.generate_window({**win, "audio": torch.cat([win["audio"][:, :k] + 3, win["audio"][:, k:]], 1)},
                                  mf, num_steps=3, generator=torch.Generator().manual_seed(0))
    assert (other[:, k:] - out[:, k:]).abs().max() > 1e-5
    # generate_long: windows at 0 and 2 (stride L - k), frames 2-3 averaged
    g = torch.Generator().manual_seed(7)
    w1 = model.generate_window(_frames(batch, 0, 4), None, 3, None, g)
    w2 = model.generate_window(_frames(batch, 2, 6), w1[:, 2:4], 3, None, g)
    long = model.generate_long(batch, num_steps=3, generator=torch.Generator().manual_seed(7))
    want = torch.cat([w1[:, :2], (w1[:, 2:4] + w2[:, :2]) / 2, w2[:, 2:]], 1)
    assert long.shape == (1, 6, 3, tiny_cfg.height, tiny_cfg.width)
    torch.testing.assert_close(long, want)
    # 7 frames: the last window is moved back to end at frame 7; the seed's 10 of 25 is an option
    assert model.generate_long(make_batch(tiny_cfg, f=7), num_steps=1).shape[1] == 7
    with pytest.raises(ValueError, match="motion_frames"):
        model.generate_long(batch, window=4, motion_frames=4, num_steps=1)


def test_classifier_free_guidance_combines_branches(tiny_model, tiny_cfg):
    """One DDIM step is affine in the model output, so latents(s) = U' + s (C' - U'): s = 1 is the
    conditional pass alone, and latents(3) = 2 latents(2) - latents(1)."""
    model = tiny_model
    batch = make_batch(tiny_cfg)

    def one_step(scale):
        return model._sample(batch, 1, torch.Generator().manual_seed(0), scale)

    with torch.no_grad():
        l1, l2, l3 = one_step(1.0), one_step(2.0), one_step(3.0)
    assert (l2 - l1).abs().max() > 1e-4  # the unconditional branch (zero image embedding) differs
    torch.testing.assert_close(l3, 2 * l2 - l1, atol=1e-4, rtol=1e-4)
    paper = load_config("paper")
    assert (paper.sampling.guidance_scale, paper.sampling.num_steps) == (3.5, 30)
    # reference dropout's unconditional samples get the zero image embedding
    with torch.no_grad():
        a = model.noise_prediction(batch, 1, generator=torch.Generator().manual_seed(1))[0]
        u = model.noise_prediction(batch, 1, generator=torch.Generator().manual_seed(1),
                                   uncond=torch.tensor([True]))[0]
    assert (a - u).abs().max() > 1e-5


def test_animateanyone_variant_has_no_audio_or_pose_adaptor(tiny_cfg):
    torch.manual_seed(0)
    aa = CovOG.from_config("tiny_animateanyone")
    assert aa.ablation == "animateanyone" and aa.cfg.variant == "animateanyone"
    assert aa.pose_adaptor is None and aa.audio_drivers is None and aa.audio_projection is None
    names = {n for n, _ in aa.named_parameters()}
    assert not any(n.startswith(("pose_adaptor", "audio_")) for n in names)
    full = {n for n, _ in CovOG(tiny_cfg).named_parameters()}
    assert names < full  # the same network less those blocks
    # it reads only the reference image, the joint pose image and the target
    batch = make_batch(tiny_cfg)
    small = {k: batch[k] for k in ("ref_image", "pose_joint", "target")}
    for stage in (1, 2):
        trainable = {id(p) for p in aa.trainable_parameters(stage)}
        assert trainable
        loss = aa.training_loss(small, stage)
        assert torch.isfinite(loss)
    stage2 = {n for n, p in aa.named_parameters() if p.requires_grad}
    assert all(".motion_modules." in n for n in stage2)
    assert aa.generate(small, num_steps=1).shape == batch["target"].shape
    # paper size: same as paper less the adaptor and audio
    assert load_config("paper_animateanyone").height == 384
    assert CovOG(tiny_cfg, use_mpe=False).ablation == "no-mpe" and CovOG(tiny_cfg).ablation == ""


def test_checkpointing_same_gradients_sdpa_and_bf16(tiny_cfg):
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from talkset.covog.reference_net import (
        ReferenceReadProcessor,
        ReferenceWriteProcessor,
    )

    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    randomize_zero_inits(model)
    batch = make_batch(tiny_cfg)
    procs = {type(m.processor) for m in model.modules() if isinstance(m, Attention)}
    assert procs <= {AttnProcessor2_0, ReferenceReadProcessor, ReferenceWriteProcessor}, procs
    for stage in (1, 2):  # stage 1 also recomputes ReferenceNet, which stops early by an exception
        grads = {}
        for ckpt in (False, True):
            model.set_gradient_checkpointing(ckpt)
            model.zero_grad(set_to_none=True)
            params = model.trainable_parameters(stage)
            model.training_loss(batch, stage, generator=torch.Generator().manual_seed(4)).backward()
            grads[ckpt] = [p.grad.clone() for p in params if p.grad is not None]
        assert model.denoising_unet.unet.is_gradient_checkpointing and model.reference_net.unet.is_gradient_checkpointing
        assert len(grads[True]) == len(grads[False]) > 0
        for a, b in zip(grads[False], grads[True]):
            torch.testing.assert_close(a, b)
    # bf16: autocast training step and a bf16 model both run and stay finite
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.training_loss(batch, 2, generator=torch.Generator().manual_seed(4))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.trainable_parameters(2)
                                        if p.grad is not None)
    model.set_gradient_checkpointing(False)
    bf = model.to(torch.bfloat16)
    with torch.no_grad():
        pred, _ = bf.noise_prediction(batch, 2, generator=torch.Generator().manual_seed(4))
        out = bf.generate(batch, num_steps=1)
    assert pred.dtype == torch.bfloat16 and torch.isfinite(pred.float()).all()
    assert out.dtype == torch.float32 and torch.isfinite(out).all()

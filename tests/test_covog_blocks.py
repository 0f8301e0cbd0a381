"""CovOG blocks: pose guider, Multi-Human Pose Encoder (MIT paper Eq. 1), Interactive Audio
Driver (Eq. 2), audio projection, reference attention, configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from talkset.covog.audio_driver import InteractiveAudioDriver, resize_masks
from talkset.covog.audio_projection import AudioProjection
from talkset.covog.config import config_from_dict, load_config
from talkset.covog.denoising_unet import DenoisingUNet, build_reference_unet
from talkset.covog.multi_pose_encoder import MultiPoseEncoder
from talkset.covog.pose_guider import PoseGuider
from talkset.covog.reference_net import ReferenceNet

torch.set_num_threads(1)


def _trained_like(guider: PoseGuider, seed: int = 0) -> PoseGuider:
    """The zero conv_out makes every guider output 0 at init: give it weights so tests can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        guider.conv_out.weight.copy_(torch.randn(guider.conv_out.weight.shape, generator=g) * 0.1)
        guider.conv_out.bias.copy_(torch.randn(guider.conv_out.bias.shape, generator=g) * 0.1)
    return guider


def test_pose_guider_paper_layout_shapes_and_zero_init():
    torch.manual_seed(0)
    g = PoseGuider(320, 3, (16, 32, 96, 256))
    # Moore-AnimateAnyone layout: conv_in, 3 x (conv, stride-2 conv), conv_out
    assert [tuple(b.weight.shape) for b in g.blocks] == [
        (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (96, 32, 3, 3), (96, 96, 3, 3), (256, 96, 3, 3)]
    assert [b.stride for b in g.blocks] == [(1, 1), (2, 2)] * 3
    x = torch.rand(2, 3, 64, 48)
    y = g(x)
    assert y.shape == (2, 320, 8, 6)
    assert torch.count_nonzero(y) == 0  # zero-initialised conv_out
    _trained_like(g)
    assert g(x).abs().mean() > 1e-3


def test_mpe_invariant_to_people_order_and_equals_single_guider():
    torch.manual_seed(0)
    guider = _trained_like(PoseGuider(32, 3, (16, 32, 64)))
    mpe = MultiPoseEncoder(guider)
    n, p, h, w = 3, 4, 32, 24
    poses = torch.rand(n, p, 3, h, w)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True, True, True, True]])
    out = mpe(poses, mask)
    assert out.shape == (n, 32, h // 4, w // 4)

    # order of people does not matter (permute images and mask together)
    perm = torch.tensor([2, 0, 3, 1])
    out_perm = mpe(poses[:, perm], mask[:, perm])
    torch.testing.assert_close(out_perm, out, rtol=1e-5, atol=1e-6)

    # one person: exactly the single guider
    single = mpe(poses[:, :1], torch.ones(n, 1, dtype=torch.bool))
    assert torch.equal(single, guider(poses[:, 0]))
    # one real person plus padding slots full of other images: still exactly the single guider
    padded = mpe(poses, torch.tensor([[True, False, False, False]] * n))
    assert torch.equal(padded, guider(poses[:, 0]))

    # it is the sum of the per-person embeddings, and each person matters
    manual = sum(guider(poses[:, i]) * mask[:, i, None, None, None] for i in range(p))
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-6)
    dropped = mpe(poses, mask & torch.tensor([False, True, True, True]))
    assert (dropped - out).abs().max() > 1e-3

    with pytest.raises(ValueError, match="people_mask"):
        mpe(poses, mask[:, :2])


def _face_masks(n: int, p: int, size: int) -> torch.Tensor:
    """Box masks aligned to the 4-pixel grid of an 8x8 hidden state at 32x32."""
    m = torch.zeros(n, p, size, size)
    m[:, 0, 4:12, 4:16] = 1     # person 0
    m[:, 1, 20:28, 8:20] = 1    # person 1
    m[:, 2, 12:20, 24:32] = 1   # person 2 (unknown speaking score in frame 1)
    m[:, 3, 0:4, 24:32] = 1     # padding slot (people mask False)
    return m


def test_iad_identity_at_init_then_changes_only_inside_face_masks():
    torch.manual_seed(0)
    n, c, h, w, p, t, d = 2, 16, 8, 8, 4, 5, 8
    iad = InteractiveAudioDriver(channels=c, token_dim=d, heads=2, gate_hidden=8)
    hidden = torch.randn(n, c, h, w)
    tokens = torch.randn(n, t, d)
    speaking = torch.tensor([[0.9, -0.5, 0.2, 0.0], [0.9, -0.5, float("nan"), 0.0]])
    masks = _face_masks(n, p, 32)
    people = torch.tensor([[True, True, True, False]] * n)

    out0 = iad(hidden, tokens, speaking, masks, people)
    assert out0.shape == hidden.shape
    assert torch.equal(out0, hidden)  # zero-initialised output projection

    opt = torch.optim.Adam(iad.parameters(), lr=1e-2)
    target = torch.randn_like(hidden)
    loss = (iad(hidden, tokens, speaking, masks, people) - target).pow(2).mean()
    loss.backward()
    opt.step()

    with torch.no_grad():
        diff = (iad(hidden, tokens, speaking, masks, people) - hidden).abs().amax(dim=1)  # (n, h, w)
    cells = resize_masks(masks, (h, w))  # (n, p, 8, 8), exact 4x4 blocks here
    used = cells * people[:, :, None, None] * (~torch.isnan(speaking))[:, :, None, None]
    inside = used.amax(dim=1) > 0
    assert torch.equal(diff[~inside], torch.zeros_like(diff[~inside]))  # outside: exactly unchanged
    assert (diff[inside] > 0).all()  # inside every used face box: changed
    # padded slot and the NaN-score person in frame 1 contribute nothing
    assert diff[:, 0, 6:8].abs().max() == 0
    assert diff[1, 3:5, 6:8].abs().max() == 0 and diff[0, 3:5, 6:8].min() > 0
    # the speaking score matters: same audio, other scores -> other output inside the boxes
    with torch.no_grad():
        other = iad(hidden, tokens, -speaking, masks, people)
        base = iad(hidden, tokens, speaking, masks, people)
    assert (other - base).abs()[:, :, 1:3, 1:4].max() > 0

    with pytest.raises(ValueError, match="face_masks"):
        iad(hidden, tokens, speaking, masks[:, :2], people)
    with pytest.raises(ValueError, match="audio_tokens"):
        iad(hidden, tokens[..., :4], speaking, masks, people)


def test_resize_masks_keeps_small_faces():
    m = torch.zeros(1, 1, 384, 640)  # paper size, H x W (landscape)
    m[0, 0, 100:106, 200:205] = 1  # a 6x5-pixel face
    for size in ((48, 80), (6, 10)):
        r = resize_masks(m, size)
        assert r.shape == (1, 1) + size
        assert r.sum() >= 1 and set(r.unique().tolist()) <= {0.0, 1.0}


def test_audio_projection_shapes_and_context_window():
    torch.manual_seed(0)
    proj = AudioProjection(layers=12, dim=768, context=2, hidden=64, tokens=32, token_dim=1024)
    x = torch.randn(2, 9, 12, 768)
    y = proj(x)
    assert y.shape == (2, 9, 32, 1024)
    x2 = x.clone()
    x2[:, 8] += 1.0  # frame 8 is outside frame 3's +-2 window
    y2 = proj(x2)
    assert torch.equal(y2[:, :6], y[:, :6])
    assert (y2[:, 6:] - y[:, 6:]).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"\(B, F, 12, 768\)"):
        proj(torch.randn(2, 9, 768))


def test_reference_attention_bank_and_read():
    torch.manual_seed(0)
    cfg = load_config("tiny")
    den = DenoisingUNet.from_config(cfg)
    ref = ReferenceNet(build_reference_unet(cfg), den.reference_layer_names)
    assert ref.layer_names == den.reference_layer_names and len(ref.layer_names) == 4
    h, w = cfg.latent_size
    b, f = 2, 3
    ctx = torch.randn(b, 4, cfg.unet.cross_attention_dim)
    bank = ref(torch.randn(b, cfg.latent.channels, h, w), torch.zeros(b, dtype=torch.long), ctx)
    assert list(bank.tensors) == ref.layer_names
    c = cfg.unet.block_out_channels
    shapes = [tuple(bank.tensors[n].shape) for n in ref.layer_names]
    # tiny: attention only at the coarse level: down block 1, mid block, up block 0
    # (layers_per_block + 1 = 2 transformers), all at (h / 2) x (w / 2) with c[1] channels
    assert [n.split(".")[0] + "." + n.split(".")[1] for n in ref.layer_names] == [
        "down_blocks.1", "mid_block.attentions", "up_blocks.0", "up_blocks.0"]
    assert shapes == [(b, h * w // 4, c[1])] * 4
    sample = torch.randn(b, cfg.latent.channels, f, h, w)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        plain = den(sample, t, ctx)
        read = den(sample, t, ctx, bank=bank)
        again = den(sample, t, ctx)
    assert read.shape == sample.shape
    assert (read - plain).abs().max() > 1e-4  # the reference changes the denoising UNet
    assert torch.equal(plain, again)  # and nothing stays installed after the call
    # ReferenceNet stops after its last read layer: its output layers never run
    used = ref.used_parameter_names()
    assert "conv_out.weight" not in used and "conv_in.weight" in used


def test_configs_load_and_validate(tmp_path):
    tiny, paper = load_config("tiny"), load_config("paper")
    # landscape: the paper's 640x384 is width x height (16:9 multi-person footage)
    assert (tiny.height, tiny.width) == (48, 80) and tiny.latent_size == (24, 40)
    assert (tiny.latent.factor, tiny.latent.channels) == (2, 12)
    assert paper.latent_size == (48, 80)
    assert (paper.height, paper.width, paper.num_frames, paper.motion_frames) == (384, 640, 15, 6)
    assert (paper.scheduler.prediction_type, paper.scheduler.rescale_betas_zero_snr) == ("v_prediction", True)
    assert (paper.audio.layers, paper.audio.dim, paper.audio.tokens, paper.audio.token_dim) == (12, 768, 32, 1024)
    assert paper.pose.guider_channels == [16, 32, 96, 256]
    bad = tiny.to_dict()
    bad["pose"]["guider_channels"] = [16, 32, 64, 128]  # /8, latent is /2
    with pytest.raises(ValueError, match="downsamples by 8"):
        config_from_dict(bad)
    # the old tiny latent: pixel-unshuffle by 4 = 48 channels into a 32-wide UNet (loss stalls)
    bad = tiny.to_dict()
    bad["latent"].update(factor=4, channels=48)
    bad["pose"].update(guider_channels=[16, 32, 64], adaptor_channels=[8, 16, 16])
    with pytest.raises(ValueError, match="narrower than 2 x the 48 latent channels"):
        config_from_dict(bad)
    bad = tiny.to_dict()
    bad["audio"]["layerz"] = 3
    with pytest.raises(ValueError, match="layerz"):
        config_from_dict(bad)
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        load_config("nonexistent")
    p = tmp_path / "mine.yaml"
    p.write_text("name: mine\nheight: 64\nwidth: 64\n")
    assert load_config(str(p)).height == 64


def test_blocks_are_plain_modules():
    # every block is an nn.Module whose parameters are all float32 and finite at init
    for m in (PoseGuider(32, 3, (16, 32, 64)), InteractiveAudioDriver(32, 16, 2, 8),
              AudioProjection(2, 8, 1, 16, 4, 16)):
        assert isinstance(m, nn.Module)
        assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in m.parameters())

"""CovOG end to end: tiny config trains on CPU (stage 1 / 2, the right parameters, loss goes
down, generation with motion frames, ablations); paper config builds at full size on the meta
device and runs one forward; weights come from user paths only."""

from __future__ import annotations

import pytest
import torch

from talkset.covog.config import load_config
from talkset.covog.model import WEIGHTS, CovOG
from talkset.weights import WeightsNotFound

torch.set_num_threads(1)


def make_batch(cfg, b=1, f=None, p=2, device="cpu", seed=0):
    """A batch with the documented keys, shapes, ranges and dtypes."""
    f = f or cfg.num_frames
    h, w = cfg.height, cfg.width
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.rand(*shape, generator=g).to(device)

    people = torch.ones(b, p, dtype=torch.bool)
    if p > 2:
        people[:, -1] = False  # one padding slot
    speaking = r(b, f, p) * 2 - 1
    speaking[:, 0, 0] = float("nan")
    faces = torch.zeros(b, f, p, h, w)
    for i in range(p):  # one face box per person, side by side near the top
        x0 = i * w // p
        faces[:, :, i, h // 8: h // 8 + h // 5, x0 + 1: x0 + w // p - 1] = 1
    return dict(
        ref_image=r(b, 3, h, w) * 2 - 1, ref_pose=r(b, 3, h, w), target=r(b, f, 3, h, w) * 2 - 1,
        pose_people=r(b, f, p, 3, h, w), pose_joint=r(b, f, 3, h, w), people_mask=people.to(device),
        face_masks=faces.to(device), audio=torch.randn(b, f, cfg.audio.layers, cfg.audio.dim,
                                                                       generator=g).to(device),
        speaking=speaking,
    )


def randomize_zero_inits(model: CovOG, seed: int = 0) -> None:
    """Pose guiders, motion modules and IAD start as exact no-ops; give their zero-initialised
    output layers weights so conditioning effects can be observed."""
    g = torch.Generator().manual_seed(seed)
    layers = [(model.pose_guider.conv_out, 1.0), (model.pose_adaptor.conv_out, 1.0)]
    layers += [(m.proj_out, 0.3) for m in model.denoising_unet.motion_modules]
    if model.audio_drivers is not None:
        layers += [(d.attn.to_out[0], 0.3) for d in model.audio_drivers.values()]
    with torch.no_grad():
        for layer, scale in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config("tiny")


def test_tiny_latent_is_exactly_invertible(tiny_cfg):
    model = CovOG(tiny_cfg)
    x = torch.rand(3, 3, tiny_cfg.height, tiny_cfg.width) * 2 - 1
    z = model.encode(x)
    assert z.shape == (3, tiny_cfg.latent.channels) + tiny_cfg.latent_size
    assert torch.equal(model.decode(z), x)


@pytest.mark.parametrize("stage", [1, 2])
def test_tiny_stage_gradients_only_on_trainable_parameters(tiny_cfg, stage):
    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    trainable = model.trainable_parameters(stage)
    ids = {id(p) for p in trainable}
    loss = model.training_loss(make_batch(tiny_cfg, p=3), stage, generator=torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    named = dict(model.named_parameters())
    outside = [n for n, p in named.items() if id(p) not in ids and p.grad is not None]
    assert outside == []
    without = [n for n, p in named.items() if id(p) in ids and p.grad is None]
    assert without == []  # every trainable parameter is used
    groups = {n.split(".")[0] for n, p in named.items() if id(p) in ids}
    if stage == 1:
        assert groups == {"reference_net", "denoising_unet", "pose_encoder", "pose_adaptor", "image_context"}
        assert not any(".motion_modules." in n for n, p in named.items() if id(p) in ids)
        assert named["pose_encoder.guider.conv_out.weight"].grad.abs().sum() > 0
        assert named["pose_adaptor.conv_out.weight"].grad.abs().sum() > 0
    else:
        assert groups == {"denoising_unet", "audio_projection", "audio_drivers"}
        assert all(".motion_modules." in n for n, p in named.items()
                   if id(p) in ids and n.startswith("denoising_unet."))
        assert named["audio_drivers.0.attn.to_out.0.weight"].grad.abs().sum() > 0


@pytest.mark.parametrize("stage", [1, 2])
def test_tiny_overfits_one_batch(tiny_cfg, stage):
    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    batch = make_batch(tiny_cfg, seed=1)
    opt = torch.optim.AdamW(model.trainable_parameters(stage), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = model.training_loss(batch, stage, generator=torch.Generator().manual_seed(3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # same noise and timesteps every step: the loss must go down monotonically
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] * (0.9 if stage == 1 else 0.995), losses


def real_frames(cfg, n: int = 5):
    """``n`` frames (n, 3, H, W) in [-1, 1] of a real two-person interview, letterboxed to the
    config's H x W as the training dataset does (frames 0.2 s apart)."""
    import numpy as np
    from conftest import clip

    from talkset import media
    from talkset.training.dataset import fit_transform, warp_frame

    hw = (cfg.height, cfg.width)
    out = []
    for _, _, img in media.iter_frames(clip("visualvoice_interview.mp4"), 0.0, n / 5, fps=5, fmt="rgb24"):
        out.append(warp_frame(img, hw, fit_transform(img.shape[:2], hw)))
    x = torch.from_numpy(np.stack(out[:n])).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert x.shape == (n, 3) + hw
    return x


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_tiny_learns_the_high_noise_end_quickly(tiny_cfg, prediction_type):
    """At t = 999 (zero terminal SNR: x_t is the noise itself) predicting epsilon is the identity
    and v is -x0 of a fixed batch. 60 AdamW steps at t in [900, 1000) on real frames must cut the
    loss there to well under half. The former tiny latent (pixel-unshuffle by 4: 48 channels
    into a 32-wide UNet) could not carry the noise through: epsilon loss 1.12 -> 0.75 in these
    60 steps and ~0.6 after 400 steps at every t; now 1.12 -> ~0.23 (epsilon), 0.63 -> ~0.09 (v)."""
    import dataclasses

    cfg = dataclasses.replace(tiny_cfg, scheduler=dataclasses.replace(tiny_cfg.scheduler,
                                                                      prediction_type=prediction_type))
    frames = real_frames(cfg)
    batch = {**make_batch(cfg, seed=1), "ref_image": frames[:1], "target": frames[None, 1:]}
    torch.manual_seed(0)
    model = CovOG(cfg)
    params = model.trainable_parameters(1)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-2)  # talkset.training.loop's tiny lr

    def high_t_loss() -> float:
        with torch.no_grad():
            return sum(model.training_loss(batch, 1, torch.Generator().manual_seed(s), timesteps=torch.tensor([t])).item()
                       for s, t in ((7, 999), (8, 950))) / 2

    before = high_t_loss()
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss = model.training_loss(batch, 1, g, timesteps=torch.randint(900, 1000, (1,), generator=g))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    after = high_t_loss()
    print(f"\n{prediction_type}: loss at t in (950, 999) {before:.3f} -> {after:.3f} after 60 steps")
    assert before > (1.0 if prediction_type == "epsilon" else 0.4), before  # nothing learnt at init
    assert after < 0.4 * before, (before, after)


def test_tiny_generate_shapes_and_motion_frames(tiny_cfg):
    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    randomize_zero_inits(model)
    batch = make_batch(tiny_cfg, f=3, p=3)
    out = model.generate(batch, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 3, tiny_cfg.height, tiny_cfg.width)
    assert out.min() >= -1 and out.max() <= 1 and torch.isfinite(out).all()
    again = model.generate(batch, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # the generator fixes the sample
    k = tiny_cfg.motion_frames
    mf = torch.rand(1, k, 3, tiny_cfg.height, tiny_cfg.width) * 2 - 1
    with_mf = model.generate(batch, num_steps=2, motion_frames=mf, generator=torch.Generator().manual_seed(0))
    other_mf = model.generate(batch, num_steps=2, motion_frames=-mf, generator=torch.Generator().manual_seed(0))
    assert with_mf.shape == out.shape
    assert (with_mf - other_mf).abs().max() > 1e-4  # carried frames reach the window (motion modules)
    # epsilon with zero terminal SNR cannot be sampled (x0 = (x_t - eps) / 0 at t = 999)
    import dataclasses

    eps_cfg = dataclasses.replace(tiny_cfg, scheduler=dataclasses.replace(tiny_cfg.scheduler, prediction_type="epsilon"))
    with pytest.raises(ValueError, match="zero terminal SNR"):
        CovOG(eps_cfg).generate(batch, num_steps=2)


def test_tiny_conditioning_reaches_the_loss(tiny_cfg):
    """Changing each input changes the stage-2 noise prediction (pose, reference, audio,
    speaking scores, face boxes); padded people and the joint pose image do not."""
    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    randomize_zero_inits(model)
    batch = make_batch(tiny_cfg, p=3)

    def pred(b):
        with torch.no_grad():
            return model.noise_prediction(b, 2, generator=torch.Generator().manual_seed(5))[0]

    base = pred(batch)
    loss = model.training_loss(batch, 2, generator=torch.Generator().manual_seed(5))
    target = model.noise_prediction(batch, 2, generator=torch.Generator().manual_seed(5))[1]
    torch.testing.assert_close(loss, ((base - target) ** 2).mean())
    for key, change in (("pose_people", lambda x: x.flip(-1)), ("ref_image", lambda x: -x),
                        ("ref_pose", lambda x: 1 - x), ("audio", lambda x: x + 1),
                        ("speaking", lambda x: -x), ("face_masks", lambda x: x.roll(5, -2))):
        assert (pred({**batch, key: change(batch[key])}) - base).abs().max() > 1e-5, key
    # padded people and the joint pose image are not read by the full model
    pp = batch["pose_people"].clone()
    pp[:, :, 2] = torch.rand_like(pp[:, :, 2])
    assert torch.equal(pred({**batch, "pose_people": pp}), base)
    assert torch.equal(pred({**batch, "pose_joint": torch.zeros_like(batch["pose_joint"])}), base)


def test_ablations_build_and_run(tiny_cfg):
    torch.manual_seed(0)
    no_iad = CovOG(tiny_cfg, use_iad=False)
    assert no_iad.audio_drivers is None and no_iad.audio_projection is None
    assert not any(n.startswith(("audio_", "audio_drivers")) for n, _ in no_iad.named_parameters())
    batch = make_batch(tiny_cfg)
    no_audio = {k: v for k, v in batch.items() if k not in ("audio", "speaking", "face_masks")}
    for stage in (1, 2):
        no_iad.trainable_parameters(stage)
        assert torch.isfinite(no_iad.training_loss(no_audio, stage))
    assert no_iad.generate(no_audio, num_steps=1).shape == batch["target"].shape

    no_mpe = CovOG(tiny_cfg, use_mpe=False)
    randomize_zero_inits(no_mpe)
    joint_only = {k: v for k, v in batch.items() if k != "pose_people"}
    with torch.no_grad():
        a = no_mpe.training_loss(joint_only, 1, generator=torch.Generator().manual_seed(0))
        b = no_mpe.training_loss({**joint_only, "pose_joint": batch["pose_joint"].flip(-1)}, 1,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(a) and a != b  # the joint pose image drives it
    assert no_mpe.generate(joint_only, num_steps=1).shape == batch["target"].shape


def test_weights_load_from_user_paths(tiny_cfg, tmp_path):
    torch.manual_seed(0)
    model = CovOG(tiny_cfg)
    randomize_zero_inits(model)
    torch.save(model.state_dict(), tmp_path / "covog.pt")
    torch.save(model.pose_guider.state_dict(), tmp_path / "pose_guider.pth")
    loaded = CovOG.from_config("tiny", weights={"covog": str(tmp_path / "covog.pt")})
    for (n, p), (_, q) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), n
    pg = CovOG.from_config("tiny", weights={"pose_guider": str(tmp_path / "pose_guider.pth")})
    assert torch.equal(pg.pose_guider.conv_out.weight, model.pose_guider.conv_out.weight)
    torch.save({"conv_in.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        CovOG.from_config("tiny", weights={"pose_guider": str(tmp_path / "bad.pth")})
    with pytest.raises(ValueError, match="unknown weights key"):
        CovOG.from_config("tiny", weights={"sd15": str(tmp_path)})


@pytest.mark.parametrize("key", ["unet", "vae", "motion_module", "image_encoder", "reference_unet",
                                 "denoising_unet", "pose_guider"])
def test_paper_missing_weights_name_the_path(tmp_path, key):
    path = tmp_path / "nowhere" / f"{key}_weights"
    with pytest.raises(WeightsNotFound) as e:
        CovOG.from_config("paper", weights={key: str(path)})
    msg = str(e.value)
    assert str(path) in msg
    assert WEIGHTS[key][0].split(" (")[0][:20] in msg  # says what belongs there


def test_paper_config_full_size_on_meta_one_forward():
    cfg = load_config("paper")
    with torch.device("meta"):
        model = CovOG(cfg)
    count = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
    assert count["reference_net"] == 859_520_964  # the SD 1.5 UNet
    motion = sum(p.numel() for n, p in model.denoising_unet.named_parameters() if ".motion_modules." in n)
    assert count["denoising_unet"] - motion == 859_520_964
    assert 440e6 < motion < 460e6  # AnimateDiff v2 motion modules (~453 M)
    assert count["vae"] == 83_653_863  # SD 1.5 AutoencoderKL
    batch = make_batch(cfg, p=3, device="meta")
    assert batch["audio"].shape == (1, 15, 12, 768)
    for stage in (1, 2):
        model.trainable_parameters(stage)
        loss = model.training_loss(batch, stage)
        assert loss.shape == () and loss.device.type == "meta"
    tokens = model.audio_projection(batch["audio"])
    assert tokens.shape == (1, 15, 32, 1024)
    lat = model.encode(batch["ref_image"])
    assert lat.shape == (1, 4, 48, 80)  # 384 x 640 (H x W) / 8
    assert model.decode(lat).shape == (1, 3, 384, 640)


def test_diffusers_folders_load_into_both_unets(tiny_cfg, tmp_path):
    """SD-1.5-style UNet folder -> ReferenceNet + denoising UNet spatial layers; MotionAdapter
    folder -> motion modules (tiny sizes, saved with diffusers' own save_pretrained)."""
    from diffusers import MotionAdapter, UNet2DConditionModel

    from talkset.covog.denoising_unet import unet2d_kwargs

    torch.manual_seed(1)
    unet = UNet2DConditionModel(**unet2d_kwargs(tiny_cfg))
    unet.save_pretrained(tmp_path / "unet")
    adapter = MotionAdapter(
        block_out_channels=tuple(tiny_cfg.unet.block_out_channels), motion_layers_per_block=tiny_cfg.unet.layers_per_block,
        motion_num_attention_heads=tiny_cfg.motion.num_attention_heads,
        motion_norm_num_groups=tiny_cfg.unet.norm_num_groups, motion_max_seq_length=tiny_cfg.motion.max_seq_length,
        use_motion_mid_block=True)
    adapter.save_pretrained(tmp_path / "mm")
    model = CovOG.from_config("tiny", weights={"unet": str(tmp_path / "unet"), "motion_module": str(tmp_path / "mm")})
    ref, den = model.reference_net.unet.state_dict(), model.denoising_unet.unet.state_dict()
    assert set(den) == set(unet.state_dict()) | set(adapter.state_dict())
    for k, v in unet.state_dict().items():
        assert torch.equal(ref[k], v) and torch.equal(den[k], v), k
    for k, v in adapter.state_dict().items():
        assert torch.equal(den[k], v), k
    assert model.denoising_unet.motion_modules[0].proj_out.weight.abs().sum() > 0  # loaded, not zero-init
    assert torch.isfinite(model.training_loss(make_batch(tiny_cfg), 2))

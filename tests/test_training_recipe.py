"""The CovOG training recipe (talkset.training.recipe / dataset / audio_features / loop pieces) on the
tiny config and the small real root of test_training_dataset.

What these show: the 59-keypoint pose images leave the lips blank; stage-2 windows use the seed's
random stride; reference dropout, noise offset and min-SNR weights change the loss inputs exactly
as their formulas say; autocast really runs the UNet in bf16; DataLoader workers give the same
batches as the training process; wav2vec2-or-stand-in audio features are computed once per clip
and read back. What they cannot show: that the recipe improves a paper-size model (no SD 1.5
weights, no GPU time here).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from talkset import env

env.configure(threads=1)

try:
    from test_training_dataset import build_small_root
except ImportError:  # tests imported as a package
    from tests.test_training_dataset import build_small_root


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    return build_small_root(tmp_path_factory.getbasetemp() / "talkset-small-root")


@pytest.fixture(scope="module")
def tiny():
    from talkset.covog.model import CovOG

    torch.manual_seed(0)
    return CovOG.from_config("tiny")


def _tiny_batch(root: Path, model, n: int = 2, frames: int = 1):
    from talkset.training.dataset import (
        TalkingClipDataset,
        collate,
        model_batch,
        spec_from_config,
    )

    ds = TalkingClipDataset(root, spec_from_config(model.cfg), audio_model="logmel")
    rng = np.random.default_rng(0)
    return model_batch(collate([ds.sample(rng, frames) for _ in range(n)]))


# -- pose images ---------------------------------------------------------------------------------


def _mouth_kp133(kp17: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (T, 133, 3) whole-body layout from real (T, 17, 3) body keypoints plus 68 face points
    (iBUG order, COCO-WholeBody 23-90) laid out on the face: the jaw and brows on a ring around the
    head, the 20 lip points (71-90) on a small ellipse below the nose. Returns (kp133, lip box
    (T, 4) x1 y1 x2 y2)."""
    T = kp17.shape[0]
    out = np.zeros((T, 133, 3), np.float32)
    out[:, :17] = kp17
    nose, lear, rear = kp17[:, 0, :2], kp17[:, 3, :2], kp17[:, 4, :2]
    r = np.maximum(np.linalg.norm(lear - rear, axis=1), 8.0)[:, None]  # head width in px
    ang = np.linspace(0, 2 * np.pi, 51, endpoint=False)[None]
    ring = np.stack([nose[:, :1] + 0.6 * r * np.cos(ang), nose[:, 1:] + 0.6 * r * np.sin(ang)], -1)
    out[:, 23:74, :2] = ring  # iBUG 0-50: jaw, brows, nose, eyes (only their existence matters here)
    mouth_c = nose + np.concatenate([np.zeros_like(r), 0.6 * r], 1)  # clear of the nose dot
    la = np.linspace(0, 2 * np.pi, 20, endpoint=False)[None]
    lips = np.stack([mouth_c[:, :1] + 0.2 * r * np.cos(la), mouth_c[:, 1:] + 0.08 * r * np.sin(la)], -1)
    out[:, 71:91, :2] = lips  # iBUG 48-67: outer + inner lip
    out[:, 23:91, 2] = 0.9
    ok = kp17[:, 0, 2] >= 0.3
    out[~ok, 23:91, 2] = 0.0
    box = np.concatenate([lips.min(1) - 1, lips.max(1) + 1], 1)
    return out, box


def test_pose_images_leave_the_lips_blank_by_default(small_root):
    """Same whole-body keypoints drawn two ways: the default 59-keypoint image has no pixel in the
    lip box (face points are not drawn) but keeps the body; ``pose_keypoints=133`` draws the lips."""
    from talkset.training.dataset import SampleSpec, TalkingClipDataset

    imgs = {}
    for k in (59, 133):
        spec = SampleSpec(height=180, width=320, num_frames=3, max_people=2, audio_layers=2, audio_dim=16,
                          pose_keypoints=k)
        ds = TalkingClipDataset(small_root, spec, audio_model="logmel")
        cid = ds.clip_ids[0]
        c = ds.clip(cid)
        boxes = []
        for p in range(len(c.track_ids)):
            assert c.kpts[p].shape[1] == 17  # the people stage's COCO body keypoints (real)
            c.kpts[p], box = _mouth_kp133(c.kpts[p])
            boxes.append(box)
        imgs[k] = (ds.window(cid, 20, 20), boxes)
    (w59, boxes), (w133, _) = imgs[59], imgs[133]
    lip_px = {59: 0.0, 133: 0.0}
    n_boxes = 0
    for j, f in enumerate(range(20, 23)):
        for p, box in enumerate(boxes):
            if not np.isfinite(box[f]).all() or box[f, 2] - box[f, 0] < 2:
                continue
            x1, y1, x2, y2 = (int(v) for v in np.round(box[f]))
            n_boxes += 1
            for k, w in ((59, w59), (133, w133)):
                lip_px[k] += float(w["pose_joint"][j, :, max(0, y1):y2 + 1, max(0, x1):x2 + 1].sum())
    assert n_boxes >= 4
    assert lip_px[59] == 0.0, lip_px  # the lips are not in the default pose image
    assert lip_px[133] > 1.0, lip_px  # ... and are with the whole 133
    assert float(w59["pose_joint"].sum()) > 50  # the body is still drawn
    assert float(w133["pose_joint"].sum()) > float(w59["pose_joint"].sum())


def test_render_pose_rejects_other_keypoint_counts():
    from talkset.training.dataset import render_pose

    with pytest.raises(ValueError, match="59 .* or 133"):
        render_pose([np.zeros((17, 3), np.float32)], (32, 32), keypoints=68)


# -- frame sampling ------------------------------------------------------------------------------


def test_strided_indices_follow_the_seed_sampler():
    from talkset.training.dataset import strided_indices

    rng = np.random.default_rng(0)
    strides = set()
    for _ in range(400):
        idx = strided_indices(75, 15, 4, rng)
        assert idx.shape == (15,) and idx.dtype == np.int64
        assert idx[0] >= 0 and idx[-1] < 75 and np.all(np.diff(idx) >= 0)
        span = int(idx[-1] - idx[0]) + 1
        s = (span - 1) // 14
        assert span == 14 * s + 1 and np.array_equal(idx, np.linspace(idx[0], idx[-1], 15).astype(np.int64))
        strides.add(s)
    assert strides == {1, 2, 3, 4}
    # a clip shorter than the span: the whole clip, indices spread with repeats
    short = strided_indices(10, 15, 4, np.random.default_rng(1))
    assert short[0] == 0 and short[-1] == 9 and len(short) == 15
    assert np.array_equal(strided_indices(75, 4, 1, np.random.default_rng(2)) - strided_indices(75, 4, 1, np.random.default_rng(2))[0],
                          np.arange(4))


def test_stage_batches_single_frames_then_strided_windows_and_loader_workers(small_root):
    """Stage 1 batches hold 1 frame, stage 2 the model's window; two DataLoader worker processes
    give exactly the in-process batches, in step order."""
    from talkset.covog.config import load_config
    from talkset.training.config import TrainConfig
    from talkset.training.dataset import TalkingClipDataset, spec_from_config
    from talkset.training.loop import StepBatches, frames_of, step_loader

    opts = TrainConfig(root=str(small_root), model="tiny", audio_model="logmel", batch_size=2, stage2_batch_size=1)
    cfg = load_config("tiny")
    ds = TalkingClipDataset(small_root, spec_from_config(cfg), audio_model="logmel")
    assert frames_of(opts, cfg, 1) == 1 and frames_of(opts, cfg, 2) == cfg.num_frames == 4
    s1 = StepBatches(ds, opts, 0, 1, 0, 6, frames_of(opts, cfg, 1))
    b = s1.batch(3)
    assert b["target"].shape[:2] == (2, 1) and b["pose_people"].shape[:2] == (2, 1)
    s2 = StepBatches(ds, opts, 0, 2, 10, 16, frames_of(opts, cfg, 2))
    assert s2.batch(10)["target"].shape[:2] == (1, 4)
    here = list(step_loader(s2, 0))
    there = list(step_loader(s2, 2))
    assert [s for s, _ in here] == [s for s, _ in there] == list(range(10, 16))
    for (_, a), (_, c) in zip(here, there):
        for k in a:
            assert torch.equal(a[k], c[k]) or (torch.isnan(a[k]).any() and torch.allclose(a[k], c[k], equal_nan=True)), k


# -- the loss --------------------------------------------------------------------------------------


def test_min_snr_weights_match_the_hand_formula(tiny):
    from talkset.training.recipe import min_snr_weights

    ac = tiny.noise_scheduler.alphas_cumprod
    ts = torch.tensor([0, 10, 100, 250, 500, 750, 999])
    w_v = min_snr_weights(ac, ts, 5.0, "v_prediction")
    w_e = min_snr_weights(ac, ts, 5.0, "epsilon")
    for i, t in enumerate(ts.tolist()):
        a = float(ac[t])
        snr = a / (1 - a) if a < 1 else math.inf
        want_v = min(snr + 1, 5.0) / (snr + 1)
        want_e = 1.0 if snr == 0 else min(snr, 5.0) / snr
        assert float(w_v[i]) == pytest.approx(want_v, rel=1e-5), t
        assert float(w_e[i]) == pytest.approx(want_e, rel=1e-5), t
    assert float(ac[999]) == 0.0 and float(w_v[-1]) == 1.0  # zero terminal SNR: weight 1 at t = 999
    assert float(w_v[0]) < 0.01  # nearly clean samples weigh little
    assert torch.all(w_v[1:] >= w_v[:-1])  # weights grow with the noise level


def test_reference_dropout_zeroes_the_expected_fraction():
    from talkset.training.recipe import drop_reference

    n = 20000
    batch = {"ref_image": torch.rand(n, 3, 2, 2) * 2 - 1 + 0.01, "ref_pose": torch.rand(n, 3, 2, 2) + 0.01,
             "target": torch.rand(n, 1, 3, 2, 2)}
    out, dropped = drop_reference(batch, 0.1, torch.Generator().manual_seed(7))
    assert abs(float(dropped.float().mean()) - 0.1) < 0.01
    for key in ("ref_image", "ref_pose"):
        assert float(out[key][dropped].abs().sum()) == 0.0
        assert torch.equal(out[key][~dropped], batch[key][~dropped])
    assert out["target"] is batch["target"] and float(batch["ref_image"].abs().min()) > 0  # input untouched
    _, again = drop_reference(batch, 0.1, torch.Generator().manual_seed(7))
    assert torch.equal(again, dropped)
    _, none = drop_reference(batch, 0.0, torch.Generator().manual_seed(7))
    assert not none.any()


def test_noise_offset_shifts_input_and_target_as_the_formula(small_root, tiny):
    """recipe_terms with a noise offset against noise_prediction run by hand on the same draws:
    the UNet's noisy input moves by sqrt(1 - a_t) * offset * z, the v target by sqrt(a_t) *
    offset * z, and z is one value per sample and latent channel."""
    from talkset.training.recipe import Recipe, recipe_terms

    batch = _tiny_batch(small_root, tiny)
    seen = []
    # a forward hook sees the arguments the UNet actually ran on (after any pre-hook replaced them)
    h = tiny.denoising_unet.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().clone()))
    try:
        t = torch.tensor([300, 800])
        with torch.no_grad():
            terms = recipe_terms(tiny, batch, 1, Recipe(ref_dropout=0.0, noise_offset=0.05, snr_gamma=5.0),
                                 torch.Generator().manual_seed(3), timesteps=t)
            g = torch.Generator().manual_seed(3)
            torch.randint(0, 1000, (2,), generator=g)  # the recipe's draws, in its order
            z = 0.05 * torch.randn((2, tiny.cfg.latent.channels, 1, 1, 1), generator=g)
            pred0, want0 = tiny.noise_prediction(batch, 1, g, timesteps=t)
    finally:
        h.remove()
    assert torch.allclose(terms["offset"], z)
    ac = tiny.noise_scheduler.alphas_cumprod[t].view(2, 1, 1, 1, 1).float()
    # seen[0]: the UNet input with the offset, seen[1]: without
    assert len(seen) == 2
    assert torch.allclose(seen[0] - seen[1], (1 - ac).sqrt() * z, atol=1e-6)
    assert torch.allclose(terms["want"] - want0.float(), ac.sqrt() * z, atol=1e-6)
    assert not torch.allclose(terms["pred"], pred0.float())
    w = terms["weights"]
    for i, tt in enumerate(t.tolist()):
        a = float(tiny.noise_scheduler.alphas_cumprod[tt])
        assert float(w[i]) == pytest.approx(min(a / (1 - a) + 1, 5) / (a / (1 - a) + 1), rel=1e-5)


def test_reference_dropout_reaches_the_model(small_root, tiny):
    """A dropped sample is predicted as the model's unconditional branch (``uncond=`` where
    noise_prediction has it, else from a zeroed reference), the others as before."""
    from talkset.training.recipe import (
        Recipe,
        drop_reference,
        recipe_terms,
        takes_uncond,
    )

    batch = _tiny_batch(small_root, tiny)
    t = torch.tensor([400, 400])
    with torch.no_grad():
        terms = recipe_terms(tiny, batch, 1, Recipe(ref_dropout=0.5, noise_offset=0.0, snr_gamma=None),
                             torch.Generator().manual_seed(16), timesteps=t)
        g = torch.Generator().manual_seed(16)
        dropped = torch.rand(2, generator=g) < 0.5
        torch.randint(0, 1000, (2,), generator=g)
        if takes_uncond(tiny):
            pred_drop, _ = tiny.noise_prediction(batch, 1, g, timesteps=t, uncond=dropped)
        else:
            pred_drop, _ = tiny.noise_prediction(drop_reference(batch, 1.0)[0], 1, g, timesteps=t)
        g = torch.Generator().manual_seed(16)
        torch.rand(2, generator=g), torch.randint(0, 1000, (2,), generator=g)
        pred_keep, _ = tiny.noise_prediction(batch, 1, g, timesteps=t)
    assert terms["dropped"].tolist() == dropped.tolist() == [True, False]  # seed 16: one of each
    assert torch.allclose(terms["pred"][0], pred_drop[0].float(), atol=1e-5)
    assert torch.allclose(terms["pred"][1], pred_keep[1].float(), atol=1e-5)
    assert not torch.allclose(terms["pred"][0], pred_keep[0].float(), atol=1e-3)
    assert torch.all(terms["weights"] == 1)


def test_recipe_loss_is_the_weighted_mse_and_bf16_autocast_runs_the_unet_in_bf16(small_root, tiny):
    from talkset.training.recipe import Recipe, recipe_loss, recipe_terms, weighted_mse

    batch = _tiny_batch(small_root, tiny)
    rec = Recipe()
    with torch.no_grad():
        loss = recipe_loss(tiny, batch, 1, rec, torch.Generator().manual_seed(5))
        terms = recipe_terms(tiny, batch, 1, rec, torch.Generator().manual_seed(5))
    per = ((terms["pred"] - terms["want"]) ** 2).flatten(1).mean(1)
    assert float(loss) == pytest.approx(float((per * terms["weights"]).mean()), rel=1e-6)
    assert float(weighted_mse(terms["pred"], terms["want"], torch.ones(2))) == pytest.approx(float(per.mean()), rel=1e-6)
    dtypes = []
    conv = next(m for m in tiny.denoising_unet.modules() if isinstance(m, torch.nn.Conv2d))
    h = conv.register_forward_hook(lambda m, a, o: dtypes.append(o.dtype))
    try:
        with torch.no_grad():
            l16 = recipe_loss(tiny, batch, 1, rec, torch.Generator().manual_seed(5), precision="bf16")
            recipe_loss(tiny, batch, 1, rec, torch.Generator().manual_seed(5), precision="fp32")
    finally:
        h.remove()
    assert dtypes[0] == torch.bfloat16 and dtypes[-1] == torch.float32
    assert l16.dtype == torch.float32 and math.isfinite(float(l16))
    assert float(l16) == pytest.approx(float(loss), rel=0.1)  # same draws, bf16 rounding only


def test_eight_bit_adamw_is_bitsandbytes_or_a_clear_error():
    from talkset.training.config import TrainConfig
    from talkset.training.recipe import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(4))]
    assert isinstance(make_optimizer(p, "adamw", 1e-5, 1e-2), torch.optim.AdamW)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="adamw8bit.*needs bitsandbytes"):
            make_optimizer(p, "adamw8bit", 1e-5, 1e-2)
    else:
        assert type(make_optimizer(p, "adamw8bit", 1e-5, 1e-2)).__name__ == "AdamW8bit"
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    assert TrainConfig(model="paper").checkpoint_interval() == 2000 and TrainConfig().checkpoint_interval() == 25


def test_shipped_training_yamls_load():
    from talkset.training.config import CONFIG_DIR, TrainConfig

    paper = TrainConfig.from_yaml(CONFIG_DIR / "paper.yaml", root="r")
    assert (paper.model, paper.batch_size_of(1), paper.batch_size_of(2), paper.ref_dropout, paper.noise_offset,
            paper.snr_gamma, paper.max_frame_stride, paper.pose_keypoints) == ("paper", 2, 1, 0.1, 0.05, 5.0, 4, 59)
    assert paper.learning_rate() == 1e-5 and paper.checkpoint_interval() == 2000
    tiny = TrainConfig.from_yaml(CONFIG_DIR / "tiny.yaml", root="r")
    assert tiny.audio_model == "logmel" and tiny.stage1_frames == 1


# -- audio features stored once ------------------------------------------------------------------


def test_audio_features_are_computed_once_and_read_back(small_root, tmp_path, monkeypatch):
    from talkset.storage.catalog import connect
    from talkset.training.audio_features import AudioFeatureStore
    from talkset.training.dataset import SampleSpec, TalkingClipDataset
    from talkset.weights import WeightsNotFound

    root = tmp_path / "root"
    shutil.copytree(small_root, root, ignore=shutil.ignore_patterns("audio_features"))
    spec = SampleSpec(height=36, width=64, num_frames=2, max_people=2, audio_layers=2, audio_dim=16)
    a = TalkingClipDataset(root, spec, audio_model="logmel", max_cached_clips=1)
    cids = a.clip_ids
    for cid in cids + cids:  # the cache holds one clip: the second pass misses again
        a.clip(cid)
    assert a.audio.computed == len(cids) == 4 and a.audio.loaded == 4
    b = TalkingClipDataset(root, spec, audio_model="logmel")
    for cid in cids:
        assert np.array_equal(b.clip(cid).audio, a.audio.read(cid, a.clips[cid]["source"]))
    assert b.audio.computed == 0 and b.audio.loaded == 4
    con = connect(root)
    rows = con.execute("SELECT clip_id, model, num_frames, layers, dim FROM audio_features ORDER BY clip_id").fetchall()
    assert [r[0] for r in rows] == sorted(cids)
    assert {r[1] for r in rows} == {"logmel80-randproj-seed0-2x16"} and {r[3:] for r in rows} == {(2, 16)}
    # no wav2vec2 given and none in TALKSET_WEIGHTS: a clear error naming where it looked, never the stand-in
    monkeypatch.setenv("TALKSET_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(WeightsNotFound, match=f"wav2vec2 model not found at {tmp_path / 'weights' / 'wav2vec2-base-960h'}"):
        AudioFeatureStore(root, None, 12, 768)
    with pytest.raises(WeightsNotFound, match="audio_model='logmel'"):
        TalkingClipDataset(root, spec)

"""Train CovOG with Ray Train (``TorchTrainer``): stage 1 then stage 2, checkpoints, resume.

The MIT paper (Sec. 4 / 5) trains CovOG in two stages: stage 1 trains ReferenceNet, the denoising
UNet, the pose guider and the pose adaptor; stage 2 trains only the motion modules and the
Interactive Audio Driver; AdamW, lr 1e-5, batch 4 on 4 GPUs, 30k steps each. Here both stages run
in ONE training loop: global steps ``0 .. stage1_steps-1`` are stage 1 and the next
``stage2_steps`` are stage 2. At the switch the optimiser is rebuilt over
``model.trainable_parameters(2)`` (AdamW state starts fresh, as a separate stage-2 run would) and
every other parameter is frozen.

Distributed: ``ray.train.torch.prepare_model`` wraps a small module whose ``forward`` is
``CovOG.training_loss`` in DDP (gloo on CPU, NCCL on GPUs); each worker draws its own samples
(generator seeded by ``(seed, rank, step)``, so a resumed run sees the same data it would have).
The logged loss of a step is the mean over workers (``all_reduce``).

Recipe (:mod:`talkset.training.recipe`): stage 1 draws single frames, stage 2 windows with the
seed's random frame stride; the loss is the model's diffusion MSE with reference dropout, noise
offset and min-SNR weights, under autocast when ``precision`` is bf16 / fp16.

Data: with ``loader_workers`` > 0 a ``torch.utils.data.DataLoader`` over :class:`StepBatches`
builds the batches in that many worker processes (step ``s`` in worker ``s mod k``; the loader
returns them in step order), each worker with its own clip cache; the samples of a step are the
same as in-process, since they come from ``default_rng([seed, rank, step])`` either way.

Checkpoints (every ``checkpoint_every`` steps, and when ``checkpoint_minutes`` have passed since
the last one on rank 0's clock, shared with the other ranks through the loss ``all_reduce``;
at the stage switch and at the end): rank 0
writes ``model.pt`` (CovOG ``state_dict``), ``optimizer.pt`` and ``meta.json`` (step, stage,
loss history, config name, ablation flags) to a temporary folder and reports it with
``ray.train.report(metrics, checkpoint=Checkpoint.from_directory(...))``. Metrics: every step's
``[step, stage, loss]`` is reported; reports go out every ``report_every`` steps (and with each
checkpoint) as ``{"step", "stage", "loss", "losses": [[step, stage, loss], ...]}`` because one
Ray Train V2 ``report`` costs ~1.5 s here (a barrier across workers through the controller)
against ~0.4 s for a tiny training step.

Resume: a run is ``RunConfig(storage_path=run_dir, name=name)``. Starting the same run again
(after a crash or a kill) makes Ray Train V2 restore its checkpoint list from storage;
``ray.train.get_checkpoint()`` in each worker then returns the latest checkpoint, which is loaded
with ``torch.load(..., weights_only=True)`` and training continues at the saved step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger("talkset.training")

from talkset.training.config import TrainConfig


def ablation_name(use_mpe: bool, use_iad: bool, variant: str | None = None) -> str:
    """The ``eval`` table's ``ablation`` value: ``animateanyone`` for that variant (a model config
    with ``variant: animateanyone``), else ``full`` / ``no-mpe`` / ``no-iad`` / ``no-mpe,no-iad``."""
    if variant == "animateanyone":
        return "animateanyone"
    parts = [p for p, on in (("no-mpe", use_mpe), ("no-iad", use_iad)) if not on]
    return ",".join(parts) or "full"


# -- checkpoint files ------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, model, optimizer, meta: dict) -> None:
    """Write ``model.pt``, ``optimizer.pt`` and ``meta.json`` into ``path``."""
    import torch

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), p / "model.pt")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), p / "optimizer.pt")
    (p / "meta.json").write_text(json.dumps(meta))


def read_meta(path: str | os.PathLike) -> dict:
    return json.loads((Path(path) / "meta.json").read_text())


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder (with ``model.pt`` + ``meta.json``) or the latest one (highest step)
    under a run folder. Raises ``FileNotFoundError`` naming the path."""
    p = Path(path).expanduser().resolve()
    if (p / "model.pt").is_file() and (p / "meta.json").is_file():
        return p
    cands = [m.parent for m in p.rglob("meta.json") if (m.parent / "model.pt").is_file()] if p.is_dir() else []
    if not cands:
        raise FileNotFoundError(f"no CovOG checkpoint (model.pt + meta.json) at or under {p}")
    return max(cands, key=lambda c: (read_meta(c).get("step", -1), c.stat().st_mtime))


def load_model(checkpoint: str | os.PathLike, use_mpe: bool | None = None, use_iad: bool | None = None, device: str = "cpu"):
    """``(model, meta)``: CovOG rebuilt from a checkpoint's ``meta.json`` and loaded with
    ``torch.load(..., weights_only=True)``. ``use_mpe`` / ``use_iad`` None -> as trained; a value
    that differs from the checkpoint raises ``ValueError`` (an ablation is its own training run)."""
    import torch

    from talkset.covog.model import CovOG

    ck = find_checkpoint(checkpoint)
    meta = read_meta(ck)
    for key, val in (("use_mpe", use_mpe), ("use_iad", use_iad)):
        if val is not None and bool(val) != bool(meta.get(key, True)):
            raise ValueError(
                f"checkpoint {ck} was trained with {key}={meta.get(key)}; evaluate an ablation with a "
                f"checkpoint trained with {key}={val} (talkset train --{key.replace('use_', 'no-')})"
            )
    model = CovOG.from_config(meta["config"], weights=None, use_mpe=meta.get("use_mpe", True), use_iad=meta.get("use_iad", True))
    state = torch.load(ck / "model.pt", map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), {**meta, "path": str(ck)}


# -- the per-worker loop ---------------------------------------------------------------------------


def _set_stage(model, stage: int):
    params = model.trainable_parameters(stage)
    ids = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return params


def _loss_module(core, opts: TrainConfig):
    """A module whose ``forward`` is the recipe's loss (:func:`talkset.training.recipe.recipe_loss`
    over ``CovOG.noise_prediction``), so DDP wraps the whole loss computation (defined here: torch
    is imported in the worker, not at module import)."""
    import torch

    class Loss(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, batch: dict, stage: int, generator=None):
            return recipe_loss(self.m, batch, stage, self.recipe, generator, self.precision)

    from talkset.training.recipe import Recipe, recipe_loss

    mod = Loss(core)
    mod.recipe, mod.precision = Recipe.from_options(opts), opts.precision
    return mod


def _restore(core, ckpt) -> tuple[int, list, dict | None, int | None]:
    """Load a Ray Train checkpoint into ``core``: returns ``(step, history, optimizer state,
    the stage that optimizer state belongs to)``; ``(0, [], None, None)`` without one."""
    import torch

    if ckpt is None:
        return 0, [], None, None
    with ckpt.as_directory() as d:
        meta = read_meta(d)
        core.load_state_dict(torch.load(Path(d) / "model.pt", map_location="cpu", weights_only=True))
        opt_state, opt_stage = None, None
        if (Path(d) / "optimizer.pt").is_file():
            opt_state = torch.load(Path(d) / "optimizer.pt", map_location="cpu", weights_only=True)
            opt_stage = int(meta["stage"])  # the optimiser of the stage running when saved
        return int(meta["step"]), list(meta.get("history", [])), opt_state, opt_stage


def _mean_over_workers(loss, world: int, flag: bool = False) -> tuple[float, bool]:
    """``(the step's loss averaged over the Ray Train workers, whether any worker raised flag)``
    through one ``all_reduce``."""
    import torch

    lv = torch.stack([loss.detach().float().reshape(()).cpu(), torch.tensor(float(flag))])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(lv)
    return float(lv[0]) / world, bool(lv[1] > 0)


class StepBatches:
    """The batches of training steps ``start .. stop-1`` of one rank and stage, as an iterable
    (a ``torch.utils.data.IterableDataset`` when wrapped by :func:`step_loader`): yields
    ``(step, model batch)``; step ``s`` draws its samples from ``default_rng([seed, rank, s])``.
    Under DataLoader workers, worker ``w`` of ``k`` makes steps ``start + w, start + w + k, ...``."""

    def __init__(self, data, opts: TrainConfig, rank: int, stage: int, start: int, stop: int, num_frames: int):
        self.data, self.rank, self.stage, self.start, self.stop = data, rank, stage, start, stop
        self.seed, self.batch_size, self.num_frames = opts.seed, opts.batch_size_of(stage), num_frames
        self.max_stride = 1 if stage == 1 else int(opts.max_frame_stride)

    def batch(self, step: int) -> dict:
        import numpy as np

        from talkset.training.dataset import collate, model_batch

        rng = np.random.default_rng([self.seed, self.rank, step])
        return model_batch(collate([self.data.sample(rng, self.num_frames, self.max_stride) for _ in range(self.batch_size)]))

    def __iter__(self):
        import torch

        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + wid, self.stop, nw):
            yield step, self.batch(step)


def step_loader(batches: StepBatches, workers: int):
    """``batches`` itself (``workers`` 0) or a DataLoader over it with ``workers`` processes.

    The workers are *spawned*, not forked: a process that has used Ray (every Ray Train worker, and
    a test session after a collect) has threads whose forked copies died at once (measured: the
    worker "exited unexpectedly with exit code 1" after a Ray run in the same process; spawned
    workers give the in-process batches exactly). Each worker starts a fresh interpreter (a few
    seconds) once per loader."""
    import torch

    from talkset.training.dataset import IterableOf

    if workers <= 0:
        return batches
    return torch.utils.data.DataLoader(
        IterableOf(batches), batch_size=None, num_workers=int(workers), prefetch_factor=2,
        multiprocessing_context="spawn",
    )


def frames_of(opts: TrainConfig, cfg, stage: int) -> int:
    """Frames per sample in ``stage``: ``stage1_frames`` / ``stage2_frames`` (None: the model's
    ``num_frames``)."""
    from talkset.training.dataset import spec_from_config

    if stage == 1:
        return int(opts.stage1_frames)
    return int(opts.stage2_frames or spec_from_config(cfg).num_frames)


def _setup_worker(opts: TrainConfig):
    """Threads, the model (same initial weights on every rank) and the training data of one
    Ray Train worker. Returns ``(core, data, device, rank, world_size)``."""
    import ray.train
    import ray.train.torch
    import torch

    from talkset import env
    from talkset.covog.model import CovOG
    from talkset.training.dataset import TalkingClipDataset, spec_from_config
    from talkset.training.splits import clips_in

    env.configure(threads=opts.threads_per_worker)
    torch.set_num_threads(opts.threads_per_worker)
    ctx = ray.train.get_context()
    torch.manual_seed(opts.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    core = CovOG.from_config(opts.model, weights=opts.weights, use_mpe=opts.use_mpe, use_iad=opts.use_iad)
    train_ids = clips_in(opts.root, "train", make=False)
    if not train_ids:
        raise ValueError(f"{opts.root}: the split has no training clips")
    spec = spec_from_config(core.cfg, pose_keypoints=opts.pose_keypoints)
    data = TalkingClipDataset(opts.root, spec, train_ids, audio_model=opts.audio_model, seed=opts.seed)
    return core, data, ray.train.torch.get_device(), ctx.get_world_rank(), ctx.get_world_size()


def train_loop_per_worker(config: dict) -> dict:
    """Ray Train worker function. ``config = {"options": TrainConfig.to_dict()}``.

    Returns (rank 0's value is ``Result.return_value``) ``{"step", "resumed_from", "history",
    "seconds_per_step"}`` with ``history`` rows ``[step, stage, mean loss]`` of the whole run
    (carried in checkpoints, so it spans interruptions).
    """
    import numpy as np
    import ray.train
    import ray.train.torch
    import torch
    from ray.train import Checkpoint

    from talkset.training.recipe import grad_scaler, make_optimizer

    opts = TrainConfig(**config["options"])
    core, data, device, rank, world = _setup_worker(opts)
    step, history, opt_state, opt_stage = _restore(core, ray.train.get_checkpoint())
    resumed_from = step
    core.to(device)
    stop_at = opts.total_steps if opts.stop_after is None else min(opts.total_steps, resumed_from + int(opts.stop_after))
    every = opts.checkpoint_interval()
    cur_stage, ddp, optim, scaler, batches = None, None, None, None, None
    t_start = time.perf_counter()
    t_compute = t_report = 0.0
    last_report = step
    last_ckpt_time = time.monotonic()

    def checkpoint_now(stage: int, metrics: dict) -> None:
        meta = {
            "step": step, "stage": stage, "history": history, "config": opts.model, "use_mpe": opts.use_mpe,
            "use_iad": opts.use_iad, "audio_model": opts.audio_model, "seed": opts.seed,
            "pose_keypoints": opts.pose_keypoints, "options": opts.to_dict(), "world_size": world, "time": time.time(),
        }  # fmt: skip
        if rank == 0:
            with tempfile.TemporaryDirectory(prefix="covog-ckpt-") as tmp:
                save_checkpoint(tmp, core, optim, meta)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)

    while step < stop_at:
        stage = 1 if step < opts.stage1_steps else 2
        if stage != cur_stage:  # a new optimiser over the stage's parameters (stage 2: fresh AdamW)
            params = _set_stage(core, stage)
            kwargs = {"find_unused_parameters": True} if world > 1 else {}
            ddp = ray.train.torch.prepare_model(_loss_module(core, opts), move_to_device=True, parallel_strategy_kwargs=kwargs)
            optim = make_optimizer(params, opts.optimizer, opts.learning_rate(), opts.weight_decay)
            scaler = grad_scaler(device, opts.precision)
            if opt_state is not None and opt_stage == stage:
                optim.load_state_dict(opt_state)
            opt_state, cur_stage = None, stage
            stage_end = min(stop_at, opts.stage1_steps) if stage == 1 else stop_at
            batches = iter(step_loader(StepBatches(data, opts, rank, stage, step, stage_end, frames_of(opts, core.cfg, stage)),
                                       opts.loader_workers))  # fmt: skip
        t_step = time.perf_counter()
        got_step, batch = next(batches)
        if got_step != step:
            raise RuntimeError(f"data loader out of order: batch of step {got_step} at step {step}")
        batch = {k: v.to(device) for k, v in batch.items()}
        gen = torch.Generator(device=device).manual_seed(int(np.random.default_rng([opts.seed, rank, step, 1]).integers(0, 2**62)))
        loss = ddp(batch, stage, gen)
        optim.zero_grad(set_to_none=True)
        trainable = [p for p in core.parameters() if p.requires_grad]
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optim)
        else:
            loss.backward()
        if opts.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainable, opts.grad_clip)
        if scaler is not None:
            scaler.step(optim)
            scaler.update()
        else:
            optim.step()
        step += 1
        due = bool(opts.checkpoint_minutes) and rank == 0 and time.monotonic() - last_ckpt_time >= 60.0 * float(opts.checkpoint_minutes)
        loss_value, due = _mean_over_workers(loss, world, due)
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {step} (stage {stage})")
        t_compute += time.perf_counter() - t_step
        history.append([step, stage, round(loss_value, 6)])
        t_rep = time.perf_counter()
        is_ckpt = due or step % every == 0 or step == opts.stage1_steps or step == stop_at
        if is_ckpt or step - last_report >= opts.report_every:
            # every step's loss is reported: the steps since the last report ride along in "losses"
            metrics = {"step": step, "stage": stage, "loss": loss_value, "losses": history[-(step - last_report):]}
            if is_ckpt:
                checkpoint_now(stage, metrics)
                last_ckpt_time = time.monotonic()
            else:
                ray.train.report(metrics)
            last_report = step
        t_report += time.perf_counter() - t_rep
    n_run = max(1, step - resumed_from)
    return {
        "step": step,
        "resumed_from": resumed_from,
        "history": history,
        "seconds_per_step": (time.perf_counter() - t_start) / n_run,
        "compute_seconds_per_step": t_compute / n_run,
        "report_seconds_per_step": t_report / n_run,
    }


# -- the driver ------------------------------------------------------------------------------------


def run_training(opts: TrainConfig, ray_address: str | None = None, resume: bool = True) -> dict:
    """Launch (or resume) a Ray Train run; blocks until it ends.

    ``resume=False`` starts a fresh run under a new name (``<name>-<UTC time>``) instead of
    continuing the folder ``run_dir/name``. Returns a summary: ``{"run", "run_path",
    "checkpoint", "steps", "resumed_from", "loss_first", "loss_last", "loss_first_mean",
    "loss_last_mean", "history", "seconds", "seconds_per_step", "num_workers", "use_gpu", "lr",
    "ablation"}``. Raises ``RuntimeError`` when training failed (the worker's error inside).
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from talkset.covog.config import load_config
    from talkset.flows.runner import init_ray
    from talkset.training.splits import clips_in, make_splits, splits_path

    root = str(Path(opts.root).expanduser().resolve())
    opts.root = root
    if not splits_path(root).is_file():
        make_splits(root, seed=opts.split_seed)
    if not clips_in(root, "train", make=False):
        raise ValueError(f"{root}: no training clips in the split (collect more sources)")
    if opts.optimizer == "adamw8bit":
        from talkset.training.recipe import make_optimizer

        make_optimizer([__import__("torch").zeros(1, requires_grad=True)], "adamw8bit", 1e-5, 0.0)  # ImportError now
    precompute_audio(root, clips_in(root, "train", make=False), opts)
    run_dir = Path(opts.run_dir).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    opts.run_dir = str(run_dir)
    if not resume:
        opts.name = f"{opts.run_name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    name = opts.run_name
    ray_info = init_ray(ray_address, num_cpus=max(2, opts.num_workers * opts.threads_per_worker))
    t0 = time.perf_counter()
    try:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"options": opts.to_dict()},
            scaling_config=ScalingConfig(
                num_workers=opts.num_workers,
                use_gpu=opts.use_gpu,
                resources_per_worker={"CPU": opts.threads_per_worker, **({"GPU": 1} if opts.use_gpu else {})},
            ),
            run_config=RunConfig(
                name=name,
                storage_path=str(run_dir),
                checkpoint_config=CheckpointConfig(num_to_keep=opts.keep_checkpoints),
                failure_config=FailureConfig(max_failures=0),
            ),
        )
        result = trainer.fit()
    finally:
        if ray_info["started"]:
            ray.shutdown()
    if result.error is not None:
        raise RuntimeError(f"training run {name} failed: {result.error}") from result.error
    ret = result.return_value or {}
    hist = ret.get("history") or []
    losses = [h[2] for h in hist]
    k = max(1, min(20, len(losses) // 5))
    return {
        "run": name,
        "run_path": str(run_dir / name),
        "checkpoint": result.checkpoint.path if result.checkpoint else None,
        "steps": ret.get("step"),
        "total_steps": opts.total_steps,
        "resumed_from": ret.get("resumed_from"),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "loss_first_mean": float(sum(losses[:k]) / k) if losses else None,
        "loss_last_mean": float(sum(losses[-k:]) / k) if losses else None,
        "stage1_last_mean": _mean_tail([h[2] for h in hist if h[1] == 1], k),
        "stage2_last_mean": _mean_tail([h[2] for h in hist if h[1] == 2], k),
        "history": hist,
        "seconds": round(time.perf_counter() - t0, 2),
        "seconds_per_step": ret.get("seconds_per_step"),
        "compute_seconds_per_step": ret.get("compute_seconds_per_step"),
        "report_seconds_per_step": ret.get("report_seconds_per_step"),
        "num_workers": opts.num_workers,
        "use_gpu": opts.use_gpu,
        "lr": opts.learning_rate(),
        "ablation": ablation_name(opts.use_mpe, opts.use_iad, getattr(load_config(opts.model), "variant", None)),
        "ray": ray_info,
    }


def precompute_audio(root: str | os.PathLike, clip_ids: list[str], opts: TrainConfig) -> dict:
    """Compute (once) and store the audio features of ``clip_ids`` under the run's audio model,
    on the driver before the workers start, so no worker computes them
    (:class:`talkset.training.audio_features.AudioFeatureStore`). A missing wav2vec2 folder raises
    ``WeightsNotFound`` here. Returns ``{"model", "computed", "loaded"}``."""
    from talkset.covog.config import load_config
    from talkset.storage.catalog import connect
    from talkset.training.audio_features import AudioFeatureStore
    from talkset.training.dataset import spec_from_config

    spec = spec_from_config(load_config(opts.model))
    store = AudioFeatureStore(root, opts.audio_model, spec.audio_layers, spec.audio_dim, seed=opts.seed)
    rows = connect(root).execute("SELECT clip_id, source, audio_path, num_frames FROM clips").fetchall()
    info = {r[0]: {"source": r[1], "audio_path": r[2], "num_frames": r[3]} for r in rows}
    for cid in clip_ids:
        if cid in info and info[cid]["num_frames"]:
            store.get(cid, info[cid], int(info[cid]["num_frames"]))
    return {"model": store.model_key, "computed": store.computed, "loaded": store.loaded}


def _mean_tail(xs: list[float], k: int) -> float | None:
    return float(sum(xs[-k:]) / len(xs[-k:])) if xs else None

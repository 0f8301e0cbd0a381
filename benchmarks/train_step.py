"""Seconds per CovOG training step for a config on this machine: one process, and Ray Train workers.

    python benchmarks/train_step.py --root <dataset root> [--config tiny] [--steps 20] [--workers 2]

Single process: the training loop's own step (the batch of :class:`talkset.training.loop.StepBatches`
- single frames in stage 1, strided windows in stage 2 -, the recipe loss of
:mod:`talkset.training.recipe` under ``--precision``, backward, AdamW step) timed over ``--steps`` steps of each stage after 2
warm-up steps, ``torch.set_num_threads(--threads)``. Ray Train: a fresh ``TorchTrainer`` run of
``--steps`` stage-1 + ``--steps`` stage-2 steps with ``--workers`` CPU workers (gloo DDP), the
workers' own seconds per step (which include the per-step ``ray.train.report``, the loss
``all_reduce`` and the checkpoints every ``--steps`` steps) and the run's wall time with Ray
start-up. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from talkset import env  # noqa: E402


def single_process(root: str, config: str, steps: int, threads: int, batch_size: int, precision: str = "fp32",
                   audio_model: str = "logmel", loader_workers: int = 0) -> dict:
    import numpy as np
    import torch

    from talkset.covog.model import CovOG
    from talkset.training.config import TrainConfig
    from talkset.training.dataset import TalkingClipDataset, spec_from_config
    from talkset.training.loop import StepBatches, _set_stage, frames_of, step_loader
    from talkset.training.recipe import Recipe, grad_scaler, make_optimizer, recipe_loss
    from talkset.training.splits import clips_in

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    opts = TrainConfig(root=root, model=config, batch_size=batch_size, precision=precision, audio_model=audio_model,
                       loader_workers=loader_workers)
    model = CovOG.from_config(config)
    spec = spec_from_config(model.cfg)
    data = TalkingClipDataset(root, spec, clips_in(root, "train"), audio_model=audio_model)
    out = {"params_total": sum(p.numel() for p in model.parameters()), "precision": precision,
           "loader_workers": loader_workers}
    for stage in (1, 2):
        params = _set_stage(model, stage)
        out[f"stage{stage}_trainable_params"] = sum(p.numel() for p in params)
        out[f"stage{stage}_frames"] = frames_of(opts, model.cfg, stage)
        opt = make_optimizer(params, opts.optimizer, 1e-3, 1e-2)
        scaler = grad_scaler("cpu", precision)
        batches = iter(step_loader(StepBatches(data, opts, 0, stage, 0, steps + 2, frames_of(opts, model.cfg, stage)),
                                   loader_workers))
        times, data_times = [], []
        for i in range(steps + 2):
            t0 = time.perf_counter()
            _, batch = next(batches)
            t1 = time.perf_counter()
            loss = recipe_loss(model, batch, stage, Recipe.from_options(opts), torch.Generator().manual_seed(i), precision)
            opt.zero_grad()
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            t2 = time.perf_counter()
            if i >= 2:
                times.append(t2 - t0)
                data_times.append(t1 - t0)
        out[f"stage{stage}_s_per_step"] = round(float(np.median(times)), 4)
        out[f"stage{stage}_data_s_per_step"] = round(float(np.median(data_times)), 4)
    return out


def ray_workers(root: str, config: str, steps: int, workers: int, audio_model: str = "logmel") -> dict:
    from talkset.training.config import TrainConfig
    from talkset.training.loop import run_training

    with tempfile.TemporaryDirectory(prefix="covog-bench-") as d:
        opts = TrainConfig(root=root, model=config, stage1_steps=steps, stage2_steps=steps, num_workers=workers,
                            checkpoint_every=steps, run_dir=d, audio_model=audio_model)
        s = run_training(opts, resume=False)
    return {"ray_workers": workers, "ray_s_per_step": round(s["seconds_per_step"], 4), "ray_run_wall_s": s["seconds"],
            "ray_steps": s["steps"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    ap.add_argument("--audio-model", default="logmel", help="wav2vec2 folder or 'logmel' (the stand-in)")
    ap.add_argument("--loader-workers", type=int, default=0)
    a = ap.parse_args(argv)
    env.configure(threads=a.threads)
    res = {"config": a.config, "steps": a.steps, "threads": a.threads, "cpus": os.cpu_count(),
           "load_avg_1m": round(os.getloadavg()[0], 2)}
    res.update(single_process(a.root, a.config, a.steps, a.threads, a.batch_size, a.precision, a.audio_model,
                              a.loader_workers))
    if not a.skip_ray:
        res.update(ray_workers(a.root, a.config, a.steps, a.workers, a.audio_model))
    res["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

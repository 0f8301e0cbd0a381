"""The ``train`` flow: train CovOG (MIT paper, Sec. 4) on a talkset dataset root with Ray Train.

A Prefect 3 flow around :func:`talkset.training.loop.run_training`: it makes the train/test split of the
root if none is recorded (:mod:`talkset.training.splits`), launches a Ray Train ``TorchTrainer``
(``num_workers`` workers, CPU + gloo or GPUs + NCCL), trains stage 1 then stage 2 with
checkpoints every ``checkpoint_every`` steps under ``run_dir/<name>``, and resumes from the latest
checkpoint when the same run is started again (``resume=True``) after a crash or a kill.

Python::

    from talkset.flows.train import train
    summary = train("dataset", config={"model": "tiny", "stage1_steps": 200, "stage2_steps": 100})

The summary (also a Prefect markdown artifact ``train-summary``) holds the steps run, where the
run resumed from, the first / last losses, the loss per 10 % of the run, and the final checkpoint.
"""

from __future__ import annotations

import logging

from talkset import env

env.configure(threads=None)

from prefect import flow  # noqa: E402

from talkset.training.config import TrainConfig  # noqa: E402
from talkset.training.loop import run_training  # noqa: E402

log = logging.getLogger("talkset.train")


def loss_curve(history: list, buckets: int = 10) -> list[dict]:
    """Mean loss per ``buckets`` equal parts of the run: ``[{"steps": "a-b", "stage", "loss"}]``."""
    if not history:
        return []
    n = len(history)
    size = max(1, -(-n // buckets))
    out = []
    for i in range(0, n, size):
        part = history[i : i + size]
        out.append(
            {
                "steps": f"{part[0][0]}-{part[-1][0]}",
                "stage": "/".join(sorted({str(h[1]) for h in part})),
                "loss": round(sum(h[2] for h in part) / len(part), 5),
            }
        )
    return out


def format_summary(s: dict) -> str:
    lines = [
        f"# CovOG training run `{s['run']}` ({s['ablation']})",
        "",
        f"- steps: {s['steps']} of {s['total_steps']} (this run started at step {s['resumed_from']})",
        f"- loss: first {s['loss_first']:.4f}, last {s['loss_last']:.4f}; mean of the first / last "
        f"steps {s['loss_first_mean']:.4f} -> {s['loss_last_mean']:.4f}"
        if s.get("loss_first") is not None
        else "- loss: no steps run",
        f"- workers: {s['num_workers']} ({'GPU' if s['use_gpu'] else 'CPU'}), lr {s['lr']:g}, "
        f"{s['seconds']:.1f} s wall, {s['seconds_per_step'] or 0:.3f} s per step",
        f"- checkpoint: `{s['checkpoint']}`",
        "",
        "| steps | stage | mean loss |",
        "|---|---|---|",
    ]
    lines += [f"| {r['steps']} | {r['stage']} | {r['loss']:.5f} |" for r in loss_curve(s.get("history") or [])]
    return "\n".join(lines)


def load_train_config(root: str, config: dict | None = None, config_file: str | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (optional), then the ``config`` fields, then
    ``root``. Raises ``ValueError`` for unknown keys."""
    fields = {**(config or {}), "root": root}
    if config_file:
        return TrainConfig.from_yaml(config_file, **fields)
    return TrainConfig.from_dict(fields)


@flow(name="train", log_prints=True)
def train(
    root: str,
    config: dict | None = None,
    config_file: str | None = None,
    ray_address: str | None = None,
    resume: bool = True,
) -> dict:
    """Train CovOG on ``root`` (see the module docstring). ``config``: fields of
    :class:`talkset.training.config.TrainConfig` (e.g. ``{"model": "tiny", "stage1_steps":
    200}``), over those of the YAML ``config_file`` when given. ``resume=False`` starts a new run
    instead of continuing the latest checkpoint of the same run name.

    Returns the summary dict of :func:`talkset.training.loop.run_training` (``history`` keeps
    every step, ``loss_curve`` 10 buckets).
    """
    opts = load_train_config(root, config, config_file)
    summary = run_training(opts, ray_address=ray_address, resume=resume)
    summary["loss_curve"] = loss_curve(summary.get("history") or [])
    text = format_summary(summary)
    print(text, flush=True)
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key="train-summary", markdown=text, description=f"CovOG run {summary['run']}")
    except Exception as exc:  # an artifact is a convenience; never fail the run for it
        log.warning("could not create the Prefect artifact: %s", exc)
    return summary

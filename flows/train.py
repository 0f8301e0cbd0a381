"""The ``train`` flow: train CovOG (MIT paper, Sec. 4) on a talkset dataset root with Ray Train.

A Prefect 3 flow around :func:`training.loop.run_training`: it makes the train/test split of the
root if none is recorded (:mod:`training.splits`), launches a Ray Train ``TorchTrainer``
(``num_workers`` workers, CPU + gloo or GPUs + NCCL), trains stage 1 then stage 2 with
checkpoints every ``checkpoint_every`` steps under ``run_dir/<name>``, and resumes from the latest
checkpoint when the same run is started again (``resume=True``) after a crash or a kill.

Python::

    from flows.train import train
    summary = train("dataset", config="tiny", stage1_steps=200, stage2_steps=100)

The summary (also a Prefect markdown artifact ``train-summary``) holds the steps run, where the
run resumed from, the first / last losses, the loss per 10 % of the run, and the final checkpoint.
"""

from __future__ import annotations

import logging

from talkset import env

env.configure(threads=None)

from prefect import flow  # noqa: E402

from training.loop import TrainOptions, run_training  # noqa: E402

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


@flow(name="train", log_prints=True)
def train(
    root: str,
    config: str = "tiny",
    stage1_steps: int = 200,
    stage2_steps: int = 100,
    num_workers: int = 2,
    use_gpu: bool = False,
    checkpoint_every: int = 25,
    report_every: int = 10,
    run_dir: str = "runs",
    resume: bool = True,
    use_mpe: bool = True,
    use_iad: bool = True,
    ray_address: str | None = None,
    batch_size: int = 1,
    lr: float | None = None,
    weights: dict[str, str] | None = None,
    audio_model: str | None = None,
    name: str | None = None,
    seed: int = 0,
    stop_after: int | None = None,
) -> dict:
    """Train CovOG on ``root`` (see the module docstring). ``config``: ``tiny``, ``paper`` or a
    YAML path (:func:`models.covog_config.load_config`); ``weights``: pretrained weights folder for
    the ``paper`` config; ``audio_model``: a wav2vec2 folder (None: the log-mel stand-in of
    :mod:`training.audio_features`); ``use_mpe`` / ``use_iad`` False: the ``--no-mpe`` /
    ``--no-iad`` ablations; ``stop_after``: end this run after that many steps (resume later).

    Returns the summary dict of :func:`training.loop.run_training` (without the per-step history
    when it is long: ``history`` keeps every step, ``loss_curve`` 10 buckets).
    """
    opts = TrainOptions(
        root=root,
        config=config,
        stage1_steps=stage1_steps,
        stage2_steps=stage2_steps,
        batch_size=batch_size,
        lr=lr,
        checkpoint_every=checkpoint_every,
        report_every=report_every,
        num_workers=num_workers,
        use_gpu=use_gpu,
        use_mpe=use_mpe,
        use_iad=use_iad,
        weights=weights,
        audio_model=audio_model,
        seed=seed,
        run_dir=run_dir,
        name=name,
        stop_after=stop_after,
    )
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

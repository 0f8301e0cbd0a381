"""The settings of a CovOG training run (:class:`TrainConfig`) and of an evaluation
(:class:`EvalConfig`): one dataclass each, used by the CLI, the Prefect flows and the Ray Train loop,
loadable from YAML (as Moore-AnimateAnyone's per-stage training configs). Each setting has its one
default here; the CLI's options default to ``None`` (= this default).

``model`` names the CovOG network config: ``tiny`` / ``paper`` (``talkset/covog/configs``) or a
YAML path of :mod:`talkset.covog.config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talkset.config import Config

PAPER_LR = 1e-5
TINY_LR = 1e-3


@dataclass
class TrainConfig(Config):
    """Options of a CovOG training run (plain values; they travel to the Ray workers).

    ``lr`` None -> 1e-5 (paper) for the ``paper`` model, 1e-3 for any other (the tiny model
    learns nothing visible at 1e-5 in a few hundred steps). ``batch_size`` is per worker.
    ``name`` None -> ``covog-<model>[-no-mpe][-no-iad]``. ``stop_after`` ends this process's run
    after that many steps (a scheduled interruption; the next run resumes). ``weights``: pretrained
    paths for the ``paper`` model (``{"vae": ..., "unet": ...}``, see
    :data:`talkset.covog.model.WEIGHTS`); ``audio_model``: a wav2vec2 folder (None: the log-mel
    stand-in of :mod:`talkset.training.audio_features`).
    """

    root: str = "dataset"
    model: str = "tiny"
    stage1_steps: int = 200
    stage2_steps: int = 100
    batch_size: int = 1
    lr: float | None = None
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    checkpoint_every: int = 25
    report_every: int = 10
    num_workers: int = 2
    use_gpu: bool = False
    use_mpe: bool = True
    use_iad: bool = True
    weights: dict[str, str] | None = None
    audio_model: str | None = None
    seed: int = 0
    split_seed: int = 0
    run_dir: str = "runs"
    name: str | None = None
    threads_per_worker: int = 1
    keep_checkpoints: int = 3
    stop_after: int | None = None

    @property
    def run_name(self) -> str:
        return self.name or ("covog-" + self.model_name + ("-no-mpe" if not self.use_mpe else "") + ("-no-iad" if not self.use_iad else ""))

    @property
    def model_name(self) -> str:
        return Path(self.model).stem if self.model.endswith((".yaml", ".yml")) else self.model

    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return PAPER_LR if self.model_name == "paper" else TINY_LR

    @property
    def total_steps(self) -> int:
        return int(self.stage1_steps) + int(self.stage2_steps)


@dataclass
class EvalConfig(Config):
    """Options of an evaluation (:func:`talkset.flows.evaluate.run_evaluation`).

    ``checkpoint``: a checkpoint folder or a run folder (its latest checkpoint). ``split``:
    ``test`` (easy + hard), ``test_easy`` or ``test_hard``. ``i3d_path``: a TorchScript I3D for
    FVD (skipped without one). ``num_steps``: denoising steps per window. ``max_frames``: score
    only the first frames of each clip (None: all). ``motion_frames`` None -> the model config's.
    ``use_mpe`` / ``use_iad`` None -> as trained (a mismatch raises ``ValueError``).
    ``audio_model`` None -> the checkpoint's.
    """

    root: str = "dataset"
    checkpoint: str = "runs"
    split: str = "test"
    i3d_path: str | None = None
    num_steps: int = 20
    max_frames: int | None = None
    motion_frames: int | None = None
    use_mpe: bool | None = None
    use_iad: bool | None = None
    audio_model: str | None = None
    seed: int = 0

"""The settings of a CovOG training run (:class:`TrainConfig`) and of an evaluation
(:class:`EvalConfig`): one dataclass each, used by the CLI, the Prefect flows and the Ray Train loop,
loadable from YAML (as Moore-AnimateAnyone's per-stage training configs). Each setting has its one
default here; the CLI's options default to ``None`` (= this default).

``model`` names the CovOG network config: ``tiny`` / ``paper`` (``talkset/covog/configs``) or a
YAML path of :mod:`talkset.covog.config`.

The training recipe (defaults = the seed's training YAMLs, Zeyu-Zhu/Multi-human-Talking-Video-Dataset
``baseline_train/configs/train/stage1.yaml`` / ``stage2.yaml``, which are Moore-AnimateAnyone's):
stage 1 on single frames (``stage1_frames`` 1; the seed's stage-1 dataset yields one target
image), stage 2 on windows of the model's ``num_frames`` (15 in ``paper``) with a random frame
stride in ``1..max_frame_stride`` (the seed's ``sample_rate: 4``), reference dropout
``ref_dropout`` 0.1 (``uncond_ratio``), ``noise_offset`` 0.05, min-SNR loss weighting
``snr_gamma`` 5 (see :mod:`talkset.training.recipe`); AdamW lr 1e-5, weight decay 1e-2, grad-norm
clip 1.0; batch 2 per GPU in stage 1 and 1 in stage 2. Both stages run in ONE training run here
(one TrainConfig, stage-specific fields prefixed ``stage1_`` / ``stage2_``), so the seed's two
stage YAMLs become one: ``configs/paper.yaml`` beside this module (and ``configs/tiny.yaml``).
fp16 mixed precision and 8-bit AdamW in stage 2 as the seed runs them are options here
(``precision``, ``optimizer``), fp32 / AdamW by default so a CPU run needs nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talkset.config import Config

PAPER_LR = 1e-5
TINY_LR = 1e-3
#: checkpoint every this many steps when ``checkpoint_every`` is None: the seed's stage-1
#: ``checkpointing_steps`` for the paper model (one checkpoint there is ~10 GB: model + AdamW
#: state; 3 kept = ~30 GB), every 25 steps for the tiny one
PAPER_CHECKPOINT_EVERY = 2000
TINY_CHECKPOINT_EVERY = 25
PRECISIONS = ("fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adamw8bit")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class TrainConfig(Config):
    """Options of a CovOG training run (plain values; they travel to the Ray workers).

    ``lr`` None -> 1e-5 (paper) for the ``paper`` model, 1e-3 for any other (the tiny model
    learns nothing visible at 1e-5 in a few hundred steps). ``batch_size`` is per worker.
    ``name`` None -> ``covog-<model>[-no-mpe][-no-iad]``. ``stop_after`` ends this process's run
    after that many steps (a scheduled interruption; the next run resumes). ``weights``: pretrained
    paths for the ``paper`` model (``{"vae": ..., "unet": ...}``, see
    :data:`talkset.covog.model.WEIGHTS`); ``audio_model``: a wav2vec2 folder, None for
    ``$TALKSET_WEIGHTS/wav2vec2-base-960h`` (missing: ``WeightsNotFound`` naming it), ``"logmel"``
    for the stand-in of :mod:`talkset.training.audio_features`.

    Recipe (module docstring): ``pose_keypoints`` 59 | 133, ``stage1_frames``, ``stage2_frames``
    (None: the model's ``num_frames``), ``max_frame_stride``, ``ref_dropout``, ``noise_offset``,
    ``snr_gamma`` (None or 0: plain MSE), ``stage2_batch_size`` (None: ``batch_size``).
    Scale: ``precision`` fp32 | bf16 | fp16 (``torch.autocast``; fp16 adds a ``GradScaler``),
    ``optimizer`` adamw | adamw8bit (bitsandbytes; ``ImportError`` when absent),
    ``loader_workers`` DataLoader worker processes per Ray worker (0: in the training process),
    ``checkpoint_every`` steps (None: 2000 for ``paper``, 25 otherwise) and / or
    ``checkpoint_minutes`` (None: off), ``keep_checkpoints`` newest kept.
    """

    root: str = "dataset"
    model: str = "tiny"
    stage1_steps: int = 200
    stage2_steps: int = 100
    batch_size: int = 1
    lr: float | None = None
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None
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
    pose_keypoints: int = 59
    stage1_frames: int = 1
    stage2_frames: int | None = None
    max_frame_stride: int = 4
    ref_dropout: float = 0.1
    noise_offset: float = 0.05
    snr_gamma: float | None = 5.0
    stage2_batch_size: int | None = None
    precision: str = "fp32"
    optimizer: str = "adamw"
    loader_workers: int = 0

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if int(self.pose_keypoints) not in (59, 133):
            raise ValueError(f"pose_keypoints must be 59 or 133, got {self.pose_keypoints}")
        if not 0.0 <= float(self.ref_dropout) < 1.0:
            raise ValueError(f"ref_dropout must be in [0, 1), got {self.ref_dropout}")
        if int(self.max_frame_stride) < 1 or int(self.stage1_frames) < 1:
            raise ValueError("max_frame_stride and stage1_frames must be >= 1")

    def checkpoint_interval(self) -> int:
        if self.checkpoint_every:
            return int(self.checkpoint_every)
        return PAPER_CHECKPOINT_EVERY if self.model_name == "paper" else TINY_CHECKPOINT_EVERY

    def batch_size_of(self, stage: int) -> int:
        return int(self.stage2_batch_size or self.batch_size) if stage == 2 else int(self.batch_size)

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
    FVD (skipped without one). ``num_steps``: denoising steps per window (None: the model
    config's sampling default, 20 where it has none); ``guidance_scale``: classifier-free guidance
    (None: the model config's; only with a model whose ``generate`` takes it). ``max_frames``: score
    only the first frames of each clip (None: all). ``motion_frames`` None -> the model config's.
    ``use_mpe`` / ``use_iad`` None -> as trained (a mismatch raises ``ValueError``).
    ``audio_model`` None -> the checkpoint's. ``device``: ``auto`` (CUDA when present, else
    CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    root: str = "dataset"
    checkpoint: str = "runs"
    split: str = "test"
    i3d_path: str | None = None
    num_steps: int | None = None
    guidance_scale: float | None = None
    max_frames: int | None = None
    motion_frames: int | None = None
    use_mpe: bool | None = None
    use_iad: bool | None = None
    audio_model: str | None = None
    seed: int = 0
    device: str = "auto"

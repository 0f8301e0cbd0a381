"""``talkset train`` and ``talkset evaluate``: the CovOG flows from the command line.

Every option defaults to ``None``, meaning the default of :class:`talkset.training.config.TrainConfig`
/ ``EvalConfig`` (shown in ``--help``); ``--config FILE.yaml`` loads those fields from YAML and the
options given on the command line override them.
"""

from __future__ import annotations

import argparse
import json

from talkset.config import default_of
from talkset.training.config import EvalConfig, TrainConfig


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


TRAIN_OPTIONS = ("model", "stage1_steps", "stage2_steps", "num_workers", "checkpoint_every", "run_dir", "name",
                 "batch_size", "lr", "audio_model", "seed", "stop_after", "checkpoint_minutes", "pose_keypoints",
                 "precision", "optimizer", "loader_workers", "ref_dropout", "noise_offset", "snr_gamma",
                 "max_frame_stride", "stage2_batch_size")  # fmt: skip
EVAL_OPTIONS = ("split", "i3d_path", "num_steps", "max_frames", "motion_frames", "audio_model", "seed", "device",
                "guidance_scale")


def _train(args: argparse.Namespace) -> int:
    from talkset.flows.train import train

    fields = _given(args, TRAIN_OPTIONS)
    if args.weights:
        fields["weights"] = json.loads(args.weights)
    if args.use_gpu:
        fields["use_gpu"] = True
    if args.no_mpe:
        fields["use_mpe"] = False
    if args.no_iad:
        fields["use_iad"] = False
    summary = train(root=args.root, config=fields, config_file=args.config, ray_address=args.ray_address,
                    resume=not args.no_resume)  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from talkset.flows.evaluate import evaluate

    fields = _given(args, EVAL_OPTIONS)
    if args.no_mpe:
        fields["use_mpe"] = False
    if args.no_iad:
        fields["use_iad"] = False
    summary = evaluate(root=args.root, checkpoint=args.checkpoint, config=fields, config_file=args.config)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def register(sub) -> None:
    T, E = TrainConfig, EvalConfig

    def d(cls, name):
        return f"(default {default_of(cls, name)})"

    t = sub.add_parser("train", help="train CovOG (stage 1 then stage 2) on Ray Train")
    t.add_argument("--root", required=True, help="a collected dataset root")
    t.add_argument("--config", default=None, help="YAML of TrainConfig fields (options below override it)")
    t.add_argument("--model", default=None, help=f"CovOG network: tiny | paper | a YAML path {d(T, 'model')}")
    t.add_argument("--stage1-steps", type=int, default=None, help=d(T, "stage1_steps"))
    t.add_argument("--stage2-steps", type=int, default=None, help=d(T, "stage2_steps"))
    t.add_argument("--num-workers", type=int, default=None, help=f"Ray Train workers {d(T, 'num_workers')}")
    t.add_argument("--use-gpu", action="store_true")
    t.add_argument("--checkpoint-every", type=int, default=None, help="steps (default 2000 for paper, 25 otherwise)")
    t.add_argument("--run-dir", default=None, help=f"checkpoints; a re-run resumes from the latest {d(T, 'run_dir')}")
    t.add_argument("--name", default=None, help="run name under --run-dir (default covog-<model>[-no-mpe][-no-iad])")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--no-mpe", action="store_true", help="ablation: one pose guider on the joint pose image")
    t.add_argument("--no-iad", action="store_true", help="ablation: no interactive audio driver")
    t.add_argument("--ray-address", default=None)
    t.add_argument("--batch-size", type=int, default=None, help=f"per worker {d(T, 'batch_size')}")
    t.add_argument("--lr", type=float, default=None, help="default 1e-5 for the paper model, 1e-3 otherwise")
    t.add_argument("--weights", default=None, help='JSON of pretrained paths for the paper model, e.g. {"vae": "..."}')
    t.add_argument("--audio-model", default=None,
                   help="wav2vec2 folder (default $TALKSET_WEIGHTS/wav2vec2-base-960h; 'logmel': the stand-in)")
    t.add_argument("--checkpoint-minutes", type=float, default=None, help="also checkpoint every N minutes")
    t.add_argument("--pose-keypoints", type=int, choices=(59, 133), default=None,
                   help=f"keypoints drawn in the pose images {d(T, 'pose_keypoints')}")
    t.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None, help=d(T, "precision"))
    t.add_argument("--optimizer", choices=("adamw", "adamw8bit"), default=None, help=d(T, "optimizer"))
    t.add_argument("--loader-workers", type=int, default=None, help=f"DataLoader processes per worker {d(T, 'loader_workers')}")
    t.add_argument("--ref-dropout", type=float, default=None, help=d(T, "ref_dropout"))
    t.add_argument("--noise-offset", type=float, default=None, help=d(T, "noise_offset"))
    t.add_argument("--snr-gamma", type=float, default=None, help=f"min-SNR gamma, 0: plain MSE {d(T, 'snr_gamma')}")
    t.add_argument("--max-frame-stride", type=int, default=None, help=f"stage-2 random stride {d(T, 'max_frame_stride')}")
    t.add_argument("--stage2-batch-size", type=int, default=None, help="per worker in stage 2 (default --batch-size)")
    t.add_argument("--seed", type=int, default=None, help=d(T, "seed"))
    t.add_argument("--stop-after", type=int, default=None, help="end this run after N steps (resume later)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="generate held-out clips and score SSIM / PSNR / FVD")
    e.add_argument("--root", required=True)
    e.add_argument("--checkpoint", required=True, help="a train run folder (latest checkpoint) or checkpoint folder")
    e.add_argument("--config", default=None, help="YAML of EvalConfig fields (options below override it)")
    e.add_argument("--split", default=None, help=f"test | test_easy | test_hard {d(E, 'split')}")
    e.add_argument("--i3d", dest="i3d_path", default=None, help="TorchScript I3D for FVD (skipped without it)")
    e.add_argument("--num-steps", type=int, default=None, help=d(E, "num_steps"))
    e.add_argument("--max-frames", type=int, default=None)
    e.add_argument("--motion-frames", type=int, default=None)
    e.add_argument("--no-mpe", action="store_true")
    e.add_argument("--no-iad", action="store_true")
    e.add_argument("--audio-model", default=None)
    e.add_argument("--seed", type=int, default=None, help=d(E, "seed"))
    e.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance (default: the model's)")
    e.add_argument("--device", default=None, help=f"auto | cpu | cuda[:N] {d(E, 'device')}")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)

"""``talkset train`` and ``talkset evaluate``: the CovOG flows from the command line."""

from __future__ import annotations

import argparse
import json


def _train(args: argparse.Namespace) -> int:
    from flows.train import train

    weights = json.loads(args.weights) if args.weights else None
    summary = train(
        root=args.root, config=args.config, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
        num_workers=args.num_workers, use_gpu=args.use_gpu, checkpoint_every=args.checkpoint_every,
        run_dir=args.run_dir, resume=not args.no_resume, use_mpe=not args.no_mpe, use_iad=not args.no_iad,
        ray_address=args.ray_address, batch_size=args.batch_size, lr=args.lr, weights=weights,
        audio_model=args.audio_model, name=args.name, seed=args.seed, stop_after=args.stop_after,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from flows.evaluate import evaluate

    summary = evaluate(
        root=args.root, checkpoint=args.checkpoint, split=args.split, i3d_path=args.i3d, num_steps=args.num_steps,
        max_frames=args.max_frames, motion_frames=args.motion_frames,
        use_mpe=False if args.no_mpe else None, use_iad=False if args.no_iad else None,
        audio_model=args.audio_model, seed=args.seed,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def register(sub) -> None:
    t = sub.add_parser("train", help="train CovOG (stage 1 then stage 2) on Ray Train")
    t.add_argument("--root", required=True, help="a collected dataset root")
    t.add_argument("--config", default="tiny", help="tiny | paper | YAML path (models/configs)")
    t.add_argument("--stage1-steps", type=int, default=200)
    t.add_argument("--stage2-steps", type=int, default=100)
    t.add_argument("--num-workers", type=int, default=2, help="Ray Train workers")
    t.add_argument("--use-gpu", action="store_true")
    t.add_argument("--checkpoint-every", type=int, default=25)
    t.add_argument("--run-dir", default="runs", help="checkpoints; a re-run resumes from the latest")
    t.add_argument("--name", default=None, help="run name under --run-dir")
    t.add_argument("--no-resume", action="store_true")
    t.add_argument("--no-mpe", action="store_true", help="ablation: one pose guider on the joint pose image")
    t.add_argument("--no-iad", action="store_true", help="ablation: no interactive audio driver")
    t.add_argument("--ray-address", default=None)
    t.add_argument("--batch-size", type=int, default=1)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--weights", default=None, help='JSON of pretrained paths for the paper config, e.g. {"vae": "..."}')
    t.add_argument("--audio-model", default=None, help="wav2vec2 folder (default: log-mel stand-in)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--stop-after", type=int, default=None, help="end this run after N steps (resume later)")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="generate held-out clips and score SSIM / PSNR / FVD")
    e.add_argument("--root", required=True)
    e.add_argument("--checkpoint", required=True, help="a train run folder (latest checkpoint) or checkpoint folder")
    e.add_argument("--split", default="test", help="test | test_easy | test_hard")
    e.add_argument("--i3d", default=None, help="TorchScript I3D for FVD (skipped without it)")
    e.add_argument("--num-steps", type=int, default=20)
    e.add_argument("--max-frames", type=int, default=None)
    e.add_argument("--motion-frames", type=int, default=None)
    e.add_argument("--no-mpe", action="store_true")
    e.add_argument("--no-iad", action="store_true")
    e.add_argument("--audio-model", default=None)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)

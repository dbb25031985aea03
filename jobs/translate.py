"""Batch inference on Ray Data: i2i translate --model models:/i2i-pix2pix-edges2photo@champion INPUT OUTPUT
INPUT: images in a folder or a sharded dataset; OUTPUT: a folder for <name>.png (both local or s3://…).
Conditions: --direction b2a, --seed N [--num-styles K] (multimodal: K outputs <name>_s<k>.png), --reference IMAGE,
--domain N (StarGAN v2), --steps N (CoGAN's latent search; --seed S: its start).
Replicas, batch: --set translate.concurrency=4 --set translate.batch_size=32.
Single-domain families (ae, vae, gan, …): INPUT → reconstructions; --sample N [--seed S] OUTPUT: N new images
seed_<s>.png (s = S … S+N−1), e.g. i2i translate --model models:/i2i-vae-photos@champion --sample 64 out/"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.errors import ConditionError
from pipelines.translate import MAX_SAMPLES, MAX_SIZE, MAX_STEPS, MAX_STYLES, run_sample, run_translate


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i translate", __doc__)
    parser.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3 or a checkpoint folder")
    parser.add_argument("--direction", choices=["a2b", "b2a"], help="two-domain families (default a2b)")
    parser.add_argument("--seed", type=int, help="style seed (multimodal families); first sample seed (--sample)")
    parser.add_argument("--num-styles", type=int, default=1, help=f"outputs per input (≤ {MAX_STYLES}), multimodal")
    parser.add_argument("--reference", metavar="IMAGE", help="reference image of the target domain")
    parser.add_argument("--domain", type=int, help="target domain index (StarGAN v2)")
    parser.add_argument("--steps", type=int, help=f"latent-search steps (≤ {MAX_STEPS}), CoGAN (default: the "
                                                  "model's translate_steps)")
    parser.add_argument("--size", type=int, help=f"resize inputs to N×N, N ≤ {MAX_SIZE}, a size the model keeps "
                                                 "(default: its image_size)")
    parser.add_argument("--sample", type=int, metavar="N", help=f"single-domain families: N (≤ {MAX_SAMPLES}) new "
                                                                "images from the prior, no INPUT")
    parser.add_argument("input", nargs="?", help="folder of images or sharded dataset (local or s3://…)")
    parser.add_argument("output", help="output folder (local or s3://…)")
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in ("direction", "seed", "reference", "domain", "steps")}
    condition = {k: v for k, v in given.items() if v is not None}

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        if args.sample is not None:
            extra = [k for k, v in {**given, "size": args.size, "input": args.input}.items()
                     if v is not None and k != "seed"] + (["num_styles"] if args.num_styles != 1 else [])
            if extra:
                raise ConditionError(f"--sample draws from the prior and takes only --seed: not {', '.join(extra)}")
            seed = args.seed if args.seed is not None else cfg.translate.seed
            return asdict(run_sample(args.model, args.output, n=args.sample, seed=seed, cfg=cfg.translate,
                                     mlflow=cfg.mlflow, ray_config=cfg.ray))
        if args.input is None:
            raise ConditionError("give INPUT and OUTPUT (or --sample N and OUTPUT)")
        return asdict(run_translate(args.model, args.input, args.output, condition=condition,
                                    num_styles=args.num_styles, size=args.size, cfg=cfg.translate,
                                    mlflow=cfg.mlflow, ray_config=cfg.ray))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

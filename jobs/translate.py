"""Batch inference on Ray Data: i2i translate --model models:/i2i-pix2pix-edges2photo@champion INPUT OUTPUT
INPUT: images in a folder or a sharded dataset; OUTPUT: a folder for <name>.png (both local or s3://…).
Conditions: --direction b2a, --seed N [--num-styles K] (multimodal: K outputs <name>_s<k>.png), --reference IMAGE,
--domain N (StarGAN v2). Replicas, batch: --set translate.concurrency=4 --set translate.batch_size=32."""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.translate import MAX_SIZE, MAX_STYLES, run_translate


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i translate", __doc__)
    parser.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3 or a checkpoint folder")
    parser.add_argument("--direction", choices=["a2b", "b2a"], help="two-domain families (default a2b)")
    parser.add_argument("--seed", type=int, help="style seed (multimodal families)")
    parser.add_argument("--num-styles", type=int, default=1, help=f"outputs per input (≤ {MAX_STYLES}), multimodal")
    parser.add_argument("--reference", metavar="IMAGE", help="reference image of the target domain")
    parser.add_argument("--domain", type=int, help="target domain index (StarGAN v2)")
    parser.add_argument("--size", type=int, help=f"resize inputs to N×N, N ≤ {MAX_SIZE}, a size the model keeps "
                                                 "(default: its image_size)")
    parser.add_argument("input", help="folder of images or sharded dataset (local or s3://…)")
    parser.add_argument("output", help="output folder (local or s3://…)")
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in ("direction", "seed", "reference", "domain")}
    condition = {k: v for k, v in given.items() if v is not None}

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        return asdict(run_translate(args.model, args.input, args.output, condition=condition,
                                    num_styles=args.num_styles, size=args.size, cfg=cfg.translate,
                                    mlflow=cfg.mlflow, ray_config=cfg.ray))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

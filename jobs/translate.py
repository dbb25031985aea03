"""Translate a folder of images: i2i translate --model models:/i2i-pix2pix-edges2photo@champion IN_DIR OUT_DIR
Conditions: --direction b2a (two-domain families), --seed N [--num-styles K] (multimodal: K outputs <name>_s<k>.png),
--reference IMAGE (example-guided), --domain N (StarGAN v2 target domain index)."""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.translate import translate_folder


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i translate", __doc__)
    parser.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3 or a checkpoint folder")
    parser.add_argument("--direction", choices=["a2b", "b2a"], help="two-domain families (default a2b)")
    parser.add_argument("--seed", type=int, help="style seed (multimodal families)")
    parser.add_argument("--num-styles", type=int, default=1, help="outputs per input, multimodal families")
    parser.add_argument("--reference", metavar="IMAGE", help="reference image of the target domain")
    parser.add_argument("--domain", type=int, help="target domain index (StarGAN v2)")
    parser.add_argument("--size", type=int, help="resize inputs to N×N (default: the model's image_size)")
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    given = {k: getattr(args, k) for k in ("direction", "seed", "reference", "domain")}
    condition = {k: v for k, v in given.items() if v is not None}

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        return asdict(translate_folder(args.model, args.in_dir, args.out_dir, condition=condition,
                                       num_styles=args.num_styles, size=args.size, mlflow=cfg.mlflow))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

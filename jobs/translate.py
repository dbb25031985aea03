"""Translate a folder of images: i2i translate --model models:/i2i-pix2pix-edges2photo@champion IN_DIR OUT_DIR"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.translate import translate_folder


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i translate", __doc__)
    parser.add_argument("--model", required=True, help="models:/NAME@champion, models:/NAME/3 or a checkpoint folder")
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)

    def step() -> dict:
        cfg = load_config(args.config, args.overrides)
        return asdict(translate_folder(args.model, args.in_dir, args.out_dir, mlflow=cfg.mlflow))

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

"""Write one self-contained HTML page about a training run — loss and validation curves per epoch, the sample grids,
the config, the eval table and the promotion decision — from what MLflow holds, to share with someone who has no
access to the MLflow UI. The target is a run id, runs:/RUN_ID, models:/NAME/VERSION or models:/NAME@alias; the
tracking URI comes from the config (mlflow.tracking_uri), else $MLFLOW_TRACKING_URI, else the local sqlite store.

    i2i report RUN_OR_MODEL_URI [--out report.html] [--config FILE] [--set mlflow.tracking_uri=URI]
"""

import sys

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.report import run_report


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i report", __doc__, example="i2i report models:/i2i-pix2pix-edges2photo@champion "
                        "--out champion.html\n  i2i report 3f2a9c1e0b7d4e5f8a6b2c1d0e9f8a7b")
    parser.add_argument("target", metavar="RUN_OR_MODEL_URI", help="run id, runs:/ID, models:/NAME/VERSION or "
                        "models:/NAME@alias")
    parser.add_argument("--out", metavar="FILE", help="where to write the page (default: report-<run name>.html here)")
    args = parser.parse_args(argv)

    def step() -> dict:
        r = run_report(args.target, out=args.out, mlflow=load_config(args.config, args.overrides).mlflow)
        return {"out": r.out, "run_id": r.run_id, **({"model_version": r.model_version} if r.model_version else {}),
                "plots": r.plots, "images": r.images}

    return run(step)


if __name__ == "__main__":
    sys.exit(main())

"""Promote the challenger to champion if it beats the champion on the configured metric, both measured under the
same evaluation fingerprint (the champion is re-evaluated when it was not). Exit 2 when the gate refuses (an
un-evaluated challenger) or the registry fails: before the alias move the champion is unchanged; after it (while
recording the decision) the move is in the champion history and a re-run reports it.

    ray job submit --working-dir . -- python -m jobs.promote --config jobs/configs/quickstart.yaml [--version N]
"""

import sys
from dataclasses import asdict

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.nightly import step_promote


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i promote", __doc__)
    parser.add_argument("--name", help="registered model (default: i2i-<model>-<dataset> of the config)")
    parser.add_argument("--version", help="the version to judge (default: the one aliased challenger)")
    args = parser.parse_args(argv)
    return run(lambda: asdict(step_promote(load_config(args.config, args.overrides), args.name, args.version)))


if __name__ == "__main__":
    sys.exit(main())

"""The nightly: every model of a schedule for one date (each shard → [tune] → train → evaluate → register → promote),
or one pipeline config. Re-running a date skips the steps that succeeded under the same config; the exit code is 1 if
any model failed, 2 if the date is already running elsewhere (its lease <state>/<date>/_lease.json is held).

    ray job submit --submission-id nightly-2026-11-23 --runtime-env infra/runtime_env.yaml --working-dir . \\
        -- python -m jobs.nightly --schedule jobs/configs/nightly.yaml --date 2026-11-23
    i2i nightly --config jobs/configs/quickstart.yaml          # one pipeline, no schedule
"""

import sys
from datetime import date

from jobs._run import job_parser, run
from pipelines.config import load_config
from pipelines.nightly import load_schedule, run_nightly, run_schedule


def main(argv: list[str] | None = None) -> int:
    parser = job_parser("i2i nightly", __doc__)
    parser.add_argument("--schedule", metavar="FILE", help="models × datasets to retrain (default without --config: "
                        "jobs/configs/nightly.yaml); --set applies to every model's config")
    parser.add_argument("--date", help="YYYY-MM-DD naming the run (default: today); schedules only")
    parser.add_argument("--only", action="append", default=[], metavar="MODEL", help="run only this scheduled model")
    args = parser.parse_args(argv)
    if args.config and (args.schedule or args.date or args.only):
        parser.error("--config runs one pipeline; --schedule/--date/--only run a schedule")
    if args.config:
        return run(lambda: run_nightly(load_config(args.config, args.overrides)))
    when = args.date or date.today().isoformat()
    return run(lambda: run_schedule(load_schedule(args.schedule or "jobs/configs/nightly.yaml"), when,
                                    args.overrides, args.only))


if __name__ == "__main__":
    sys.exit(main())

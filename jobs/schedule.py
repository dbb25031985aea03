"""Print the cron or systemd-timer entries that submit the nightly schedule every day (nothing is installed).

examples:
    (crontab -l; i2i schedule print --address http://HEAD:8265) | crontab -
    i2i schedule print --format systemd --address http://HEAD:8265     # two units, for ~/.config/systemd/user/
"""

import argparse
import os
import shutil
import sys

from pipelines.errors import I2IError
from pipelines.nightly import load_schedule
from pipelines.schedule import cron_entry, systemd_units


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="i2i schedule print", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedule", default="jobs/configs/nightly.yaml", metavar="FILE")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265",
                        help="the cluster's Jobs API (default: $RAY_ADDRESS or http://127.0.0.1:8265)")
    parser.add_argument("--format", choices=["cron", "systemd"], default="cron")
    parser.add_argument("--workdir", default=os.getcwd(), help="the project checkout submitted as working dir")
    args = parser.parse_args(argv)
    try:
        schedule = load_schedule(args.schedule)  # a broken schedule fails here, not at 2 am
    except I2IError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    where = dict(schedule_file=args.schedule, address=args.address, workdir=os.path.abspath(args.workdir),
                 ray_bin=ray_bin)
    if args.format == "cron":
        print(cron_entry(schedule, **where))
    else:
        for name, text in systemd_units(schedule, **where).items():
            print(f"# --- {name}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared edge of every job: logging, the JSON summary on stdout, and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from pipelines.errors import user_error


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser every config-driven job starts from: ``--config FILE`` and ``--set KEY=VALUE``."""
    from pipelines.config import add_config_args

    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    return parser


def run(step: Callable[[], dict], text: bool = False) -> int:
    """Run one step; print its JSON summary (``text``: as readable lines and tables instead). Exit 0 on success, 1
    when the summary's ``status`` says the step failed, 2 on a user-facing error (message, no traceback)."""
    logging.basicConfig(level=logging.WARNING if text else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = step()
    except Exception as raised:
        err = user_error(raised)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        if not text:
            print(json.dumps({"status": "failed", "error": str(err)}))
        return 2
    status = summary.get("status", "succeeded")  # a step may report "failed" itself (e.g. one nightly model failed)
    print(render(summary) if text else json.dumps({"status": status, **summary}, indent=1, default=str))
    return 0 if status == "succeeded" else 1


def _cell(value) -> str:
    if value is None or value == [] or value == "":
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> list[str]:
    """Rows of dicts as aligned columns (the union of their keys, in first-seen order)."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [cols] + [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]


def render(summary: dict) -> str:
    """A summary for a terminal: ``key: value`` lines, then each list of dicts as a table under its key."""
    lines = [f"{k}: {_cell(v)}" for k, v in summary.items() if not (isinstance(v, list) and v and
                                                                      isinstance(v[0], dict))]
    for k, v in summary.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            lines += ["", f"{k}:", *("  " + line for line in table(v))]
    return "\n".join(lines).strip("\n")

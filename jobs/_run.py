"""Shared edge of every job: logging, the JSON summary on stdout, and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from pipelines.errors import I2IError


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser every config-driven job starts from: ``--config FILE`` and ``--set KEY=VALUE``."""
    from pipelines.config import add_config_args

    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    return parser


def user_error(err: BaseException) -> I2IError | None:
    """The I2IError behind ``err``, also when it was raised inside a Ray task and wrapped by Ray."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, I2IError):
            return err
        seen.add(id(err))
        err = getattr(err, "cause", None) or err.__cause__
    return None


def run(step: Callable[[], dict]) -> int:
    """Run one step; print its JSON summary. Exit 0 on success, 2 on a user-facing error (message, no traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = step()
    except Exception as raised:
        err = user_error(raised)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        print(json.dumps({"status": "failed", "error": str(err)}))
        return 2
    print(json.dumps({"status": "succeeded", **summary}, indent=1, default=str))
    return 0

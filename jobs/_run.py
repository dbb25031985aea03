"""Shared edge of every job: logging, the JSON summary on stdout, and exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

from pipelines.errors import I2IError


def run(step: Callable[[], dict]) -> int:
    """Run one step; print its JSON summary. Exit 0 on success, 2 on a user-facing error (message, no traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = step()
    except I2IError as err:
        print(f"error: {err}", file=sys.stderr)
        print(json.dumps({"status": "failed", "error": str(err)}))
        return 2
    print(json.dumps({"status": "succeeded", **summary}, indent=1, default=str))
    return 0

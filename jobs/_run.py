"""Shared edge of every job: logging, the JSON summary on stdout, and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable

from pipelines.errors import user_error
from pipelines.storage import redact


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser every config-driven job starts from: ``--config FILE`` and ``--set KEY=VALUE``."""
    from pipelines.config import add_config_args

    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    return parser


def run(step: Callable[[], dict], text: bool = False) -> int:
    """Run one step; print its JSON summary (``text``: as readable lines and tables instead). Exit 0 on success, 1
    when the summary's ``status`` says the step failed (or on a bug: traceback), 2 on a user-facing error (message,
    no traceback). Everything the job prints — summary, errors, logs, Ray's copy of its workers' output — passes
    through :func:`pipelines.storage.redact`: no credential in a URI reaches the job's output."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Redacting(out), _Redacting(err)
    try:
        return _run(step, text)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err


def _run(step: Callable[[], dict], text: bool) -> int:
    logging.basicConfig(level=logging.WARNING if text else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = step()
    except Exception as raised:  # noqa: BLE001 — the edge: every error leaves as a (redacted) message
        err = user_error(raised)
        if err is None:
            traceback.print_exc()  # a bug: the traceback, through the redacting stderr
            return 1
        print(f"error: {err}", file=sys.stderr)
        if not text:
            print(json.dumps({"status": "failed", "error": str(err)}))
        return 2
    status = summary.get("status", "succeeded")  # a step may report "failed" itself (e.g. one nightly model failed)
    print(render(summary) if text else json.dumps({"status": status, **summary}, indent=1, default=str))
    return 0 if status == "succeeded" else 1


class _Redacting:
    """A text stream that passes whole lines on to ``stream`` with credentials redacted."""

    def __init__(self, stream):
        self._stream, self._pending = stream, ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, self._pending = self._pending.rsplit("\n", 1)
            self._stream.write(redact(lines + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(redact(self._pending))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str):  # encoding, isatty, fileno, …: the real stream's
        return getattr(self._stream, name)


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

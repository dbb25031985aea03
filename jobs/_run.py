"""Shared edge of every job: logging, the JSON summary on stdout, and exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable

from pipelines.errors import user_error
from pipelines.storage import redact


DRY_RUN_STEPS = ("shard", "train", "evaluate", "tune", "nightly", "translate")


def job_parser(prog: str, doc: str | None, example: str | None = None) -> argparse.ArgumentParser:
    """The argument parser every config-driven job starts from: ``--config FILE``, ``--set KEY=VALUE`` and
    ``--base-dir DIR`` (and ``--dry-run`` for the steps of :data:`DRY_RUN_STEPS`); its ``--help`` ends with
    ``example`` (default: ``PROG --config jobs/configs/quickstart.yaml``)."""
    from pipelines.config import add_config_args

    step = prog.split()[-1]
    cls = _DryRunParser if step in DRY_RUN_STEPS else argparse.ArgumentParser
    parser = cls(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                 epilog=examples(example or f"{prog} --config jobs/configs/quickstart.yaml"))
    add_config_args(parser)
    if step in DRY_RUN_STEPS:
        parser.add_argument("--dry-run", action="store_true",
                            help="print the resolved config and what the step would do (run name, URIs, shards "
                                 "and samples, resources, steps, what is already done) as JSON; start nothing")
    return parser


class _DryRunParser(argparse.ArgumentParser):
    """Parses as usual; with ``--dry-run`` it prints the step's plan (:func:`pipelines.plan.dry_run`) as the JSON
    summary instead, and exits — 0, or 2 for a user error — before the job starts anything."""

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        if getattr(parsed, "dry_run", False):
            from pipelines.plan import dry_run

            raise SystemExit(run(lambda: dry_run(self.prog.split()[-1], parsed)))
        return parsed


def examples(*lines: str) -> str:
    """The epilog of a command's ``--help``: ``example:`` and the command lines a user can copy."""
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def run(step: Callable[[], dict], text: bool = False) -> int:
    """Run one step; print its JSON summary (``text``: as readable lines and tables instead). Exit 0 on success, 1
    when the summary's ``status`` says the step failed (or on a bug: traceback), 2 on a user-facing error (one
    ``error:`` line on stderr, no traceback). stdout carries the summary and nothing else: whatever the step, Ray
    and its workers print goes to stderr (:func:`_summary_stream`), so ``i2i … | jq`` reads one JSON document, also
    when the step failed. Everything the job prints — summary, errors, logs, Ray's copy of its workers' output —
    passes through :func:`pipelines.storage.redact`: no credential in a URI reaches the job's output."""
    out, err = sys.stdout, sys.stderr
    summary_out = _Redacting(_summary_stream(out))
    sys.stdout, sys.stderr = _Redacting(err), _Redacting(err)  # the step's prints: stderr
    try:
        return _run(step, text, summary_out)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        summary_out.flush()
        sys.stdout, sys.stderr = out, err


_real_stdout = None  # the process's stdout, once fd 1 was pointed at stderr (by the first job run in the process)


def _summary_stream(out):
    """Where the summary goes: ``out``; but when ``out`` is the process's own stdout (a job run as a command, not a
    test's capture), file descriptor 1 is pointed at stderr for the rest of the process — Ray's log monitor and its
    copy of the workers' output, C extensions and child processes all write there, some of it after the step
    returned — and the summary alone goes to a duplicate of the original descriptor."""
    global _real_stdout
    if out is not sys.__stdout__:
        return out
    if _real_stdout is None:
        try:
            fd, err_fd = out.fileno(), sys.__stderr__.fileno()
        except (AttributeError, OSError, ValueError):  # no descriptors (an embedding host): nothing to point
            return out
        out.flush()
        _real_stdout = os.fdopen(os.dup(fd), "w", encoding=out.encoding, errors=out.errors)
        os.dup2(err_fd, fd)
    return _real_stdout


def _run(step: Callable[[], dict], text: bool, out) -> int:
    logging.basicConfig(level=logging.WARNING if text else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = step()
    except Exception as raised:  # noqa: BLE001 — the edge: every error leaves as a (redacted) message
        err = user_error(raised)
        if err is None:
            traceback.print_exc()  # a bug: the traceback, through the redacting stderr
            return _failed(f"{type(raised).__name__}: {raised}", 1, text, out)
        return _failed(str(err), 2, text, out)
    status = summary.get("status", "succeeded")  # a step may report "failed" itself (e.g. one nightly model failed)
    sys.stderr.flush()  # the step's last log lines before the summary, where both streams share one log
    print(render(summary) if text else json.dumps({"status": status, **summary}, indent=1, default=str), file=out)
    return 0 if status == "succeeded" else 1


def _failed(message: str, code: int, text: bool, out) -> int:
    """The failure as the last line on stderr (``error: <first line>``; a longer message's other lines — e.g. the
    retry note Ray Data appends to an error raised in its tasks — before it) and, for a JSON caller,
    ``{"status": "failed", "error": <first line>}`` on stdout."""
    first, *details = message.strip().splitlines() or [""]
    for line in details:
        print(f"  {line}", file=sys.stderr)
    print(f"error: {first}", file=sys.stderr)
    sys.stderr.flush()
    if not text:
        print(json.dumps({"status": "failed", "error": first}), file=out)
    return code


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

"""``i2i`` console script: subcommands mirror the jobs (``i2i shard`` = ``python -m jobs.shard``).

``i2i --help`` lists the commands on stdout; ``i2i COMMAND --help`` shows a command's options and an example.
Exit codes: 0 ok, 1 a step failed (or a bug: traceback), 2 a usage or user error (one ``error:`` line).
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import import_module

# (words, module, one line for `i2i --help`), in the order a user meets them
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (("data", "demo"), "data_demo", "build the offline demo datasets (edges2photo, photo2winter, styles, facades)"),
    (("shard",), "shard", "shard a dataset into WebDataset tars + manifest (local or s3://)"),
    (("train",), "train", "train the configured model on Ray Train (resumes a re-submitted run)"),
    (("tune",), "tune", "tune loss weights / lr / batch with Ray Tune (ASHA or PBT)"),
    (("evaluate",), "evaluate", "evaluate a run or a registered model on the val/test shards"),
    (("register",), "register", "register a finished, evaluated run in the MLflow registry (challenger)"),
    (("promote",), "promote", "promote the challenger if it beats the champion (same eval fingerprint)"),
    (("translate",), "translate", "batch inference on Ray Data: images in, translated images out"),
    (("models",), "models", "registry: list, best (per model or across families), promote, rollback, history"),
    (("nightly",), "nightly", "the nightly: shard → [tune] → train → evaluate → register → promote"),
    (("report",), "report", "one self-contained HTML page of a run or model version: curves, samples, config, eval"),
    (("schedule", "print"), "schedule", "print the cron / systemd entries that run the nightly"),
    (("config", "show"), "config", "print the resolved config (defaults, absolute paths, secrets redacted)"),
]


def version() -> str:
    """``i2i <package version>``, and the git commit of the checkout the code runs from, when it is one."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        text = f"i2i {package_version('i2i')}"
    except PackageNotFoundError:  # run from a checkout that was never installed
        text = "i2i (not installed)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(root, ".git")):  # this checkout's own repository, not one the venv sits in
        try:
            git = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                 text=True, timeout=10)
            dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return text
        if git.returncode == 0 and git.stdout.strip():
            text += f" (commit {git.stdout.strip()}{'+dirty' if dirty.stdout.strip() else ''})"
    return text


def usage() -> str:
    width = max(len(" ".join(words)) for words, _, _ in COMMANDS)
    lines = ["usage: i2i [--help] [--version] COMMAND [options]", "",
             "Image-to-image GANs trained, tuned, tracked and shipped as Ray workflows.", "", "commands:"]
    lines += [f"  {' '.join(words).ljust(width)}  {about}" for words, _, about in COMMANDS]
    lines += ["", "Run `i2i COMMAND --help` for a command's options and an example.",
              "stdout carries the command's JSON summary only; logs go to stderr.",
              "Exit codes: 0 ok, 1 a step failed, 2 a usage or user error."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"], ["help"]):
        print(usage())
        return 0
    if argv[:1] in (["-V"], ["--version"]):
        print(version())
        return 0
    for words, module, _ in sorted(COMMANDS, key=lambda c: -len(c[0])):
        if tuple(argv[: len(words)]) == words:
            return import_module(f"jobs.{module}").main(argv[len(words):])
    what = f"unknown command '{' '.join(argv)}'" if argv else "no command given"
    print(f"{usage()}\n\nerror: {what}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

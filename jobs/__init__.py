"""Thin ``ray job submit`` entrypoints: parse args → load config → call one pipelines function → print JSON.

Importing the package checks that this Python has the project's dependencies: a job that Ray starts with another
Python (a head started from ``.venv/bin/ray`` without the venv on ``PATH`` runs entrypoints with the system
``python``) fails at once with how to start the head, instead of deep in an import.
"""

import importlib.util
import sys

_NEEDED = ("yaml", "pydantic", "PIL", "numpy", "torch", "ray", "mlflow", "webdataset", "pyarrow")


def _check_environment() -> None:
    missing = [m for m in _NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        sys.stderr.write(
            f"error: {sys.executable} cannot run i2i jobs: it lacks {', '.join(missing)}. A job submitted to Ray runs "
            "with the `python` on the PATH of the process that started the head: start the head from the project's "
            "environment (`source .venv/bin/activate && ray start --head`), or install the project into that "
            "Python (`pip install -e .`).\n")
        raise SystemExit(2)


_check_environment()

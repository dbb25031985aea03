"""Entries for the host's own scheduler (cron or a systemd timer) that submit the nightly to a Ray cluster.

Nothing here schedules anything: cron or systemd fire, and each firing runs
``ray job submit --submission-id nightly-<date> … -- python -m jobs.nightly --schedule FILE --date <date>``. The Jobs
API refuses a submission id it has seen, so a second trigger for the same date (a double-fired timer, a manual
re-run, ``Persistent=true`` catching up) cannot train twice; a deliberate re-run of a date uses another id and skips
the steps that already succeeded. Where there is no Jobs API guard (KubeRay RayJob/RayCronJob, a plain
``python -m jobs.nightly``), the nightly's own date lease (``<state>/<date>/_lease.json``, see ``pipelines.lease``)
refuses a second run of a date while one runs.
"""

from __future__ import annotations

import shlex

from pipelines.nightly import Schedule


def submit_command(*, schedule_file: str, address: str, workdir: str, ray_bin: str = "ray", date: str = "$d") -> str:
    """The shell command one firing runs from ``workdir`` (``$d`` is the date the firing computes). The job runs in
    Ray's copy of the working dir; ``--base-dir`` points its relative paths (the schedule, the configs' data and
    state folders) back at the checkout, where the data is."""
    q = shlex.quote
    return (f"{q(ray_bin)} job submit --address {q(address)} --submission-id nightly-{date} "
            f"--runtime-env infra/runtime_env.yaml --working-dir . "
            f"-- python -m jobs.nightly --base-dir {q(workdir)} --schedule {q(schedule_file)} --date {date}")


def cron_entry(schedule: Schedule, *, schedule_file: str, address: str, workdir: str, ray_bin: str = "ray") -> str:
    hour, minute = (int(x) for x in schedule.time.split(":"))
    line = f"cd {shlex.quote(workdir)} && d=$(date +%F) && " + submit_command(
        schedule_file=schedule_file, address=address, workdir=workdir, ray_bin=ray_bin)
    return (f"# i2i nightly at {schedule.time} (host's local time); cron mails the job's output and summary\n"
            f"{minute} {hour} * * * " + line.replace("%", "\\%"))  # cron reads a bare % as a newline


def systemd_units(schedule: Schedule, *, schedule_file: str, address: str, workdir: str,
                  ray_bin: str = "ray") -> dict[str, str]:
    """``i2i-nightly.service`` and ``i2i-nightly.timer`` (systemd expands ``$`` and ``%`` itself: doubled)."""
    command = "d=$(date +%F); exec " + submit_command(schedule_file=schedule_file, address=address, workdir=workdir,
                                                      ray_bin=ray_bin)
    escaped = command.replace("%", "%%").replace("$", "$$").replace("'", "'\\''")
    service = ("[Unit]\nDescription=i2i nightly retraining (ray job submit)\nWants=network-online.target\n"
               "After=network-online.target\n\n[Service]\nType=oneshot\n"
               f"WorkingDirectory={workdir}\nExecStart=/bin/sh -c '{escaped}'\n")
    timer = ("[Unit]\nDescription=i2i nightly retraining\n\n[Timer]\n"
             f"OnCalendar=*-*-* {schedule.time}:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n")
    return {"i2i-nightly.service": service, "i2i-nightly.timer": timer}

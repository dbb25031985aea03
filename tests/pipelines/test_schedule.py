"""The nightly schedule as data: validation before any work, and the cron / systemd entries that submit it."""

import subprocess

import pytest
import yaml

from jobs import schedule as schedule_job
from pipelines.errors import ConfigError, I2IError
from pipelines.nightly import load_schedule, model_config, run_schedule
from pipelines.schedule import cron_entry, systemd_units
from tests.conftest import REPO


def write(tmp_path, doc: dict) -> str:
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_schedule_is_validated_and_merges_overrides_in_order(tmp_path):
    entry = {"name": "p2p", "config": f"{REPO}/jobs/configs/quickstart.yaml", "set": {"train.epochs": 3},
             "promote_metric": "psnr", "tune": True}
    schedule = load_schedule(write(tmp_path, {"set": {"train.epochs": 2, "mlflow.experiment": "x"},
                                              "models": [entry]}))
    cfg = model_config(schedule, schedule.models[0], ["train.batch_size=2"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.mlflow.experiment) == (3, 2, "x")  # model's set wins
    assert cfg.promote.metric == "psnr" and cfg.tune.enabled

    for bad, message in [({"models": []}, "models"),
                         ({"models": [entry, entry]}, "repeated: p2p"),
                         ({"models": [{**entry, "promote_metric": "accuracy"}]}, "accuracy"),
                         ({"models": [{**entry, "name": "a b"}]}, "name"),
                         ({"models": [entry], "time": "25:00"}, "time"),
                         ({"models": [entry], "cron": "0 2 * * *"}, "unknown key 'cron'")]:
        with pytest.raises(ConfigError, match=message):
            load_schedule(write(tmp_path, bad))
    with pytest.raises(I2IError, match="YYYY-MM-DD"):
        run_schedule(schedule, "23-11-2026")
    with pytest.raises(I2IError, match="unknown model.*the schedule has: p2p"):
        run_schedule(schedule, "2026-11-23", only=["p2x"])


def test_cron_and_systemd_entries_submit_with_the_date_as_submission_id(tmp_path):
    schedule = load_schedule(write(tmp_path, {"time": "03:45", "models": [
        {"name": "p2p", "config": f"{REPO}/jobs/configs/quickstart.yaml"}]}))
    where = dict(schedule_file="my schedule.yaml", address="http://head:8265", workdir="/srv/i2i", ray_bin="ray")
    cron = cron_entry(schedule, **where).splitlines()[-1]
    fields = cron.split(" ", 5)
    assert fields[:5] == ["45", "3", "*", "*", "*"] and "%" not in cron.replace("\\%", "")  # cron: % escaped
    # what the firing runs: the same date in the submission id and in --date, the schedule path quoted
    shell = fields[5].replace("\\%", "%").replace("cd /srv/i2i && ", "").replace("ray job", "printf '%s\\n' ray job")
    def today() -> str:
        return subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()

    before = today()
    out = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True).stdout.splitlines()
    fired = out[-1]  # the date the firing computed: today's, also when the test runs across midnight
    assert fired in {before, today()} and out[out.index("--submission-id") + 1] == f"nightly-{fired}"
    # relative paths of the job resolve against the checkout the entry cds to, not Ray's copy of the working dir
    assert out[out.index("--base-dir"):] == ["--base-dir", "/srv/i2i", "--schedule", "my schedule.yaml", "--date",
                                             fired]

    units = systemd_units(schedule, **where)
    assert "OnCalendar=*-*-* 03:45:00\nPersistent=true" in units["i2i-nightly.timer"]
    exec_line = next(x for x in units["i2i-nightly.service"].splitlines() if x.startswith("ExecStart="))
    # systemd turns $$ into $ and %% into %: undone, it is the same command cron runs
    assert exec_line.replace("$$", "$").replace("%%", "%").endswith(
        "'d=$(date +%F); exec ray job submit --address http://head:8265 --submission-id nightly-$d --runtime-env "
        "infra/runtime_env.yaml --working-dir . -- python -m jobs.nightly --base-dir /srv/i2i --schedule "
        "'\\''my schedule.yaml'\\'' "
        "--date $d'")


def test_schedule_print_refuses_a_broken_schedule(tmp_path, capsys):
    assert schedule_job.main(["--schedule", write(tmp_path, {"models": [{"name": "x"}]})]) == 2
    assert "config" in capsys.readouterr().err


def test_a_model_of_one_domain_is_registered_under_its_own_name():
    """vae on domain A and vae on domain B of one dataset are two models, each with its own champion."""
    from pipelines.config import load_config
    from pipelines.nightly import _registry
    from pipelines.register import registered_name

    base = ["model.name=vae", "train.dataset=/data/photo2winter"]
    for domain, expected in (("A", "i2i-vae-photo2winter-A"), ("B", "i2i-vae-photo2winter-B")):
        cfg = load_config(None, [*base, f"train.domain={domain}"])
        assert registered_name("vae", "photo2winter", _registry(cfg, "photo2winter")) == expected
    assert registered_name("vae", "photo2winter", _registry(load_config(None, base), "photo2winter")) == \
        "i2i-vae-photo2winter"
    named = load_config(None, [*base, "train.domain=A", "registry.name=mine"])
    assert registered_name("vae", "photo2winter", _registry(named, "photo2winter")) == "mine"

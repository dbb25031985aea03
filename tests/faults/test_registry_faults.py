"""MLflow unreachable in the middle of `i2i register` / `i2i promote` (the jobs as subprocesses, their MLflow traffic
through a proxy taken down at a chosen request): the step exits non-zero, the champion is unchanged, and the same
step run again completes. MLflow's client retries are lowered in the step's environment (2 retries, backoff factor 1
factor) so an outage outlives them in seconds rather than minutes; with 0 retries one dropped request is a failed
read, as a read that outlives the retries is."""

import json
import os
import subprocess
import sys
import time
import uuid

import mlflow
import pytest
import yaml

from jobs import evaluate, promote, register, train
from pipelines.champion import LEASE_TTL_ENV
from tests.conftest import REPO
from tests.faults.conftest import TcpProxy, small_pairs

TINY = {"image_size": 32, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": 1, "n_epochs_decay": 0}
REGISTRY_WRITE = r"^POST /api/2\.0/mlflow/(registered-models|model-versions)/(alias|set-tag|update)"


@pytest.fixture(scope="module")
def evaluated_runs(ray_cluster, mlflow_server, demo_root, tmp_path_factory) -> list:
    """Two finished, evaluated training runs (seeds 0 and 1) on the session MLflow server: their config files."""
    from pipelines.shard import ShardConfig, run_shard

    root = tmp_path_factory.mktemp("registry-faults")
    source = small_pairs(demo_root, root / "src")
    run_shard(ShardConfig(source=source, output=str(root / "shards"), load_size=32, num_shards=1))
    configs = []
    for seed in (0, 1):
        cfg = root / f"seed{seed}.yaml"
        cfg.write_text(yaml.safe_dump({
            "model": {"name": "pix2pix", "args": TINY},
            "train": {"dataset": str(root / "shards"), "epochs": 1, "batch_size": 2, "crop_size": 32, "num_workers": 1,
                      "seed": seed, "storage_path": str(root / "runs"), "log_every_steps": 1000},
            "evaluate": {"feature_net": "tiny", "batch_size": 8}, "promote": {"metric": "l1"},
            "mlflow": {"tracking_uri": mlflow_server, "experiment": "faults-registry"}}))
        assert train.main(["--config", str(cfg)]) == 0
        assert evaluate.main(["--config", str(cfg)]) == 0
        configs.append(str(cfg))
    return configs


@pytest.fixture
def mlflow_proxy(mlflow_server):
    proxy = TcpProxy(mlflow_server)
    yield proxy
    proxy.close()


def step(job: str, cfg: str, name: str, tracking_uri: str, retries: int = 2) -> subprocess.CompletedProcess:
    """``python -m jobs.<job>`` as a user runs it, against ``tracking_uri``; at most 240 s (a re-run may wait out
    a champion lease left by a gate that MLflow dropped: its TTL, 20 s here instead of the default 120 s)."""
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "20", LEASE_TTL_ENV: "20"}
    return subprocess.run([sys.executable, "-m", f"jobs.{job}", "--config", cfg, "--set", f"registry.name={name}",
                           "--set", f"mlflow.tracking_uri={tracking_uri}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=240)


def summary(stdout: str) -> dict:
    return json.JSONDecoder().raw_decode(stdout[stdout.rindex('{\n "status"'):])[0]


def champion_of(client, name: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, "champion").version
    except mlflow.exceptions.MlflowException as err:
        assert "not found" in str(err).lower() or "does not exist" in str(err).lower(), err
        return None


def with_champion(cfg_champion: str, cfg_challenger: str, mlflow_server: str) -> tuple[str, object]:
    """A fresh registered model: the first run registered and promoted (champion), the second registered
    (challenger). Its name and an MLflow client."""
    name = f"i2i-faults-{uuid.uuid4().hex[:8]}"
    over = ["--set", f"registry.name={name}"]
    assert register.main(["--config", cfg_champion, *over]) == 0
    assert promote.main(["--config", cfg_champion, *over]) == 0
    assert register.main(["--config", cfg_challenger, *over]) == 0
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert champion_of(client, name) == "1"
    return name, client


def test_register_fails_while_mlflow_is_down_and_the_rerun_registers_once(evaluated_runs, mlflow_server,
                                                                          mlflow_proxy, figures):
    name = f"i2i-faults-{uuid.uuid4().hex[:8]}"
    over = ["--set", f"registry.name={name}"]
    assert register.main(["--config", evaluated_runs[0], *over]) == 0
    assert promote.main(["--config", evaluated_runs[0], *over]) == 0
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    # down at the first registry write after the model was logged: the version exists, its tags and alias do not
    mlflow_proxy.arm(REGISTRY_WRITE, seconds=None)
    t0 = time.time()
    failed = step("register", evaluated_runs[1], name, mlflow_proxy.url)
    figures["time_to_fail_s"] = round(time.time() - t0, 1)
    mlflow_proxy.up()
    figures["outage"] = mlflow_proxy.outages[:1]
    assert mlflow_proxy.outages, f"the step never reached a registry write: {failed.stderr[-3000:]}"
    assert failed.returncode != 0, failed.stdout[-2000:]
    assert "error:" in failed.stderr or "Error" in failed.stderr
    assert champion_of(client, name) == "1"
    again = step("register", evaluated_runs[1], name, mlflow_proxy.url)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    version = summary(again.stdout)["version"]
    run_id = client.get_model_version(name, "1").run_id
    versions = client.search_model_versions(f"name='{name}'")
    mine = [v for v in versions if v.run_id != run_id]
    assert [v.version for v in mine] == [version], "the re-run registered the run again instead of completing it"
    assert client.get_model_version_by_alias(name, "challenger").version == version
    assert "eval.l1" in client.get_model_version(name, version).tags
    assert champion_of(client, name) == "1"


def test_promote_fails_while_mlflow_is_down_and_the_rerun_decides(evaluated_runs, mlflow_server, mlflow_proxy,
                                                                   figures):
    name, client = with_champion(*evaluated_runs, mlflow_server)
    mlflow_proxy.arm(REGISTRY_WRITE, seconds=None)  # down when the gate writes its decision or moves the alias
    t0 = time.time()
    failed = step("promote", evaluated_runs[1], name, mlflow_proxy.url)
    figures["time_to_fail_s"] = round(time.time() - t0, 1)
    mlflow_proxy.up()
    figures["outage"] = mlflow_proxy.outages[:1]
    assert mlflow_proxy.outages, f"the gate never wrote to the registry: {failed.stderr[-3000:]}"
    assert failed.returncode != 0, failed.stdout[-2000:]
    assert champion_of(client, name) == "1"
    t1 = time.time()  # the failed gate could not release its champion lease: the re-run waits until it expires
    again = step("promote", evaluated_runs[1], name, mlflow_proxy.url)
    figures["rerun_s"] = round(time.time() - t1, 1)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    decision = summary(again.stdout)
    figures["rerun_decision"] = decision["decision"]
    assert decision["decision"] in ("promoted", "kept")
    assert champion_of(client, name) == ("2" if decision["decision"] == "promoted" else "1")
    assert client.get_model_version(name, "2").tags["promotion.decision"] == decision["decision"]


def test_promote_fails_closed_when_the_champion_cannot_be_read(evaluated_runs, mlflow_server, mlflow_proxy, figures):
    """One failed read of the champion must fail the gate, never count as "no champion yet". The champion is read
    from its alias (``registered-models/alias?…alias=champion``) or from the registered model's alias map
    (``registered-models/get``): the first such request is dropped (the proxy is back at once)."""
    name, client = with_champion(*evaluated_runs, mlflow_server)
    mlflow_proxy.arm(r"^GET /api/2\.0/mlflow/registered-models/(alias\?.*alias=champion|get\?)", seconds=0)
    failed = step("promote", evaluated_runs[1], name, mlflow_proxy.url, retries=0)
    figures["outage"] = mlflow_proxy.outages[:1]
    assert mlflow_proxy.outages, f"the gate never read the champion: {failed.stderr[-3000:]}"
    assert champion_of(client, name) == "1", "the champion moved although the gate could not read it"
    assert failed.returncode != 0, failed.stdout[-2000:]
    again = step("promote", evaluated_runs[1], name, mlflow_proxy.url)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]

"""MLflow's basic-auth app run the way infra/k8s/mlflow.yaml runs it (its flags and its ConfigMap's basic_auth.ini), on
127.0.0.1: the jobs' tracking client (pipelines.tracking) gets in with MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD and is refused without them, or with a wrong password.

The auth app needs Flask-WTF (``mlflow[auth]``); where it is not installed this module is skipped, and says so."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request

import pytest

pytest.importorskip("flask_wtf", reason="mlflow[auth] (Flask-WTF) is not installed: MLflow's basic-auth app cannot "
                                        "start")

from pipelines import tracking  # noqa: E402
from tests.conftest import free_ports, server  # noqa: E402
from tests.infra.test_manifests import MLFLOW, _flag  # noqa: E402

ADMIN_PASSWORD = "admin-Passw0rd-for-tests"
PIPELINE = ("i2i-pipeline", "pipeline-Passw0rd-for-tests")


def _create_user(uri: str, username: str, password: str) -> None:
    """As admin, through the REST API (as infra/k8s/mlflow.yaml's header does it with curl)."""
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/users/create", method="POST",
                                     data=json.dumps({"username": username, "password": password}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_jobs_tracking_client_authenticates_through_the_standard_variables(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    manifest_args = MLFLOW["Deployment"]["spec"]["template"]["spec"]["containers"][0]["command"]
    ini = MLFLOW["ConfigMap"]["data"]["basic_auth.ini"].replace("sqlite:////mlflow/", f"sqlite:///{tmp_path}/")
    (tmp_path / "basic_auth.ini").write_text(ini)
    (port,) = free_ports(1)
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": "x" * 32,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(var, None)
        monkeypatch.delenv(var, raising=False)
    cmd = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
           "--app-name", _flag(manifest_args, "--app-name"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--artifacts-destination", str(tmp_path / "artifacts")]
    uri = f"http://127.0.0.1:{port}"
    cfg = tracking.MlflowConfig(tracking_uri=uri, experiment="i2i-auth")
    with server(cmd, env=env, ready_url=f"{uri}/health", log_path=tmp_path / "server.log", group=True):
        with pytest.raises(MlflowException, match="401"):
            tracking.run_for(cfg, "run-a", {})  # no credentials
        _create_user(uri, *PIPELINE)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", PIPELINE[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PIPELINE[1])
        run_id = tracking.run_for(cfg, "run-a", {})
        assert tracking.run_for(cfg, "run-a", {}) == run_id  # found again by its name: searches work too
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        with pytest.raises(MlflowException, match="401"):
            tracking.run_for(cfg, "run-a", {})

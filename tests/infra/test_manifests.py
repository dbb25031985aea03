"""The deployment files under infra/ agree with the code and with each other (pure file parsing, no cluster).

KubeRay field names are checked against the ray.io/v1 Go types they were read from (json tags):
  https://github.com/ray-project/kuberay/blob/master/ray-operator/apis/ray/v1/raycluster_types.go
  https://github.com/ray-project/kuberay/blob/master/ray-operator/apis/ray/v1/rayjob_types.go
  https://github.com/ray-project/kuberay/blob/master/ray-operator/apis/ray/v1/raycronjob_types.go
and the RayJob quickstart: https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
MLFLOW_DOCKERFILE = INFRA / "docker" / "mlflow.Dockerfile"
SECRET_NAME = "i2i-env"
SERVER_SECRET_NAME = "mlflow-server"
SECRET_KEYS = re.compile(r"^(AWS_|MLFLOW_TRACKING_(PASSWORD|TOKEN|USERNAME)|MLFLOW_AUTH_ADMIN_PASSWORD|"
                         r"MLFLOW_FLASK_SERVER_SECRET_KEY)")

# Documented ray.io/v1 field names (json tags of the Go types above). A manifest key outside these is a typo or a
# field this project has not checked.
RAYCLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
                   "headServiceAnnotations", "suspend"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
                "scaleStrategy"}
AUTOSCALER_OPTIONS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts", "securityContext",
                      "idleTimeoutSeconds", "upscalingMode"}
RAYJOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
               "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy", "entrypoint", "runtimeEnvYAML",
               "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
               "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"}
RAYCRONJOB_SPEC = {"schedule", "jobTemplate"}  # (+ suspend, timeZone in KubeRay 1.7; not used here)


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


ALL_YAML = sorted(INFRA.rglob("*.yaml"))
MANIFESTS = {p.name: _load(p) for p in sorted(K8S.glob("*.yaml"))}


def _one(name: str, kind: str, named: str | None = None) -> dict:
    docs = [d for d in MANIFESTS[name] if d["kind"] == kind and named in (None, d["metadata"].get("name"))]
    assert len(docs) == 1, f"{name}: expected one {kind}"
    return docs[0]


CLUSTER = _one("raycluster.yaml", "RayCluster")
JOB = _one("rayjob-nightly.yaml", "RayJob")
CRON = _one("raycronjob-nightly.yaml", "RayCronJob")
FALLBACK = _one("cronjob-fallback.yaml", "CronJob")
SECRET = _one("secrets.example.yaml", "Secret", SECRET_NAME)
SERVER_SECRET = _one("secrets.example.yaml", "Secret", SERVER_SECRET_NAME)


def _walk(node, path=()):
    """Every (path, dict) in a parsed document."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, path + (i,))


def _containers(doc: dict):
    for path, node in _walk(doc):
        if path and path[-1] == "spec" and "containers" in node:
            yield from node["containers"]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _ray_pin() -> str:
    for dep in _pyproject()["project"]["dependencies"]:
        if m := re.fullmatch(r"ray\[[^]]*\]==([\w.]+)", dep.replace(" ", "")):
            return m.group(1)
    raise AssertionError("pyproject pins no ray[...]==VERSION")


def _dockerfile_base() -> str:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    (base,) = re.findall(r"^FROM\s+(\S+)", text, re.M)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], base)


def _workdir() -> str:
    return re.findall(r"^WORKDIR\s+(\S+)", DOCKERFILE.read_text(), re.M)[-1]


IMAGE = f"ghcr.io/OWNER/i2i:{_pyproject()['project']['version']}"


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_parses_and_k8s_objects_name_their_type(path):
    for doc in _load(path):
        if path.parent == K8S:
            assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata"), path.name


def test_api_versions():
    expected = {"RayCluster": "ray.io/v1", "RayJob": "ray.io/v1", "RayCronJob": "ray.io/v1", "CronJob": "batch/v1",
                "Secret": "v1", "ServiceAccount": "v1", "Role": "rbac.authorization.k8s.io/v1",
                "RoleBinding": "rbac.authorization.k8s.io/v1", "Namespace": "v1", "ConfigMap": "v1",
                "PersistentVolumeClaim": "v1", "Deployment": "apps/v1", "Service": "v1"}
    for name, docs in MANIFESTS.items():
        for doc in docs:
            assert doc["apiVersion"] == expected[doc["kind"]], f"{name}: {doc['kind']}"


def _check_cluster_fields(spec: dict, where: str):
    assert set(spec) <= RAYCLUSTER_SPEC, f"{where}: unknown RayCluster fields {set(spec) - RAYCLUSTER_SPEC}"
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP, where
    assert set(spec.get("autoscalerOptions", {})) <= AUTOSCALER_OPTIONS, where
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP, f"{where}: unknown worker group fields {set(group) - WORKER_GROUP}"


def test_kuberay_field_names_are_documented_ones():
    _check_cluster_fields(CLUSTER["spec"], "RayCluster")
    for where, job_spec in (("RayJob", JOB["spec"]), ("RayCronJob.jobTemplate", CRON["spec"]["jobTemplate"])):
        assert set(job_spec) <= RAYJOB_SPEC, f"{where}: unknown RayJob fields {set(job_spec) - RAYJOB_SPEC}"
        _check_cluster_fields(job_spec["rayClusterSpec"], where)
    assert set(CRON["spec"]) <= RAYCRONJOB_SPEC


def test_one_image_everywhere():
    ray_manifests = [CLUSTER, JOB, CRON]
    images = {c["image"] for doc in ray_manifests for c in _containers(doc)}
    assert images == {IMAGE}


def test_dockerfile_base_is_pinned_to_pyprojects_ray():
    assert _dockerfile_base() == f"rayproject/ray:{_ray_pin()}-py311-cpu"
    assert CLUSTER["spec"]["rayVersion"] == _ray_pin()
    assert not re.search(r"^USER\s+(root|0)\b", DOCKERFILE.read_text(), re.M)


def test_image_installs_dependencies_in_a_layer_before_the_code(tmp_path, monkeypatch):
    """A code change rebuilds from the code's COPY on: the dependency layer depends on pyproject.toml and
    constraints.txt alone, and the package is installed on top without dependencies."""
    text = DOCKERFILE.read_text().replace("\\\n", "")
    lines = [line for line in text.splitlines() if line.startswith(("COPY", "RUN"))]
    deps = next(i for i, line in enumerate(lines) if "-r /tmp/requirements.txt" in line)
    code = next(i for i, line in enumerate(lines) if re.match(r"COPY\s+\S+\s+pipelines/", line))
    assert all(re.match(r"COPY\s+\S+\s+(pyproject.toml constraints.txt|infra/docker/weights/)", line)
               for line in lines[:deps] if line.startswith("COPY")) and deps < code
    assert any("pip install --no-cache-dir --no-deps -c constraints.txt ." in line for line in lines[code:])
    # the layer's requirements, as the build computes them: pyproject's dependencies and the tune extra
    (script,) = re.findall(r'^RUN python -c "(.*?)"\s*&&', lines[deps])
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    monkeypatch.chdir(tmp_path)
    exec(compile(script.replace("/tmp/requirements.txt", str(tmp_path / "req.txt")), "Dockerfile RUN", "exec"), {})
    requirements = (tmp_path / "req.txt").read_text().splitlines()
    assert "torch==2.14.1" in requirements and "optuna==5.0.0" in requirements
    assert not [r for r in requirements if r.startswith(("scikit", "pytest", "moto"))]


def test_head_takes_no_work_and_gpu_workers_autoscale():
    for spec in (CLUSTER["spec"], JOB["spec"]["rayClusterSpec"]):
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        head_ports = {p["containerPort"] for c in spec["headGroupSpec"]["template"]["spec"]["containers"]
                      for p in c.get("ports", [])}
        assert 8265 in head_ports
        assert spec["enableInTreeAutoscaling"] is True
        (gpu,) = spec["workerGroupSpecs"]
        assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= 1
        (worker,) = gpu["template"]["spec"]["containers"]
        assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_nightly_job_spec_is_the_same_everywhere():
    # One RayJob spec (rayjob-nightly.yaml); the RayCronJob carries it verbatim, the CronJob mounts that very file.
    assert JOB["spec"]["rayClusterSpec"] == CLUSTER["spec"]
    assert CRON["spec"]["jobTemplate"] == JOB["spec"]
    pod = FALLBACK["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:3] == ["kubectl", "create", "-f"]
    mount_dir = Path(container["command"][3]).parent
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == mount_dir)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"]
    assert Path(container["command"][3]).name == "rayjob-nightly.yaml"  # the ConfigMap key (see the file's header)
    assert "generateName" in JOB["metadata"]  # `kubectl create` every night needs a fresh name


def test_entrypoint_runs_the_cluster_schedule_on_shared_storage():
    from pipelines.nightly import load_schedule, model_config

    entry = JOB["spec"]["entrypoint"].split()
    assert entry[:3] == ["python", "-m", "jobs.nightly"]
    assert (ROOT / "jobs" / "nightly.py").is_file()
    path = entry[entry.index("--schedule") + 1]
    assert path.startswith(_workdir() + "/")
    schedule = load_schedule(str(ROOT / Path(path).relative_to(_workdir())))
    assert schedule.state.startswith("s3://")  # markers and summaries outlive the job's temporary working dir
    workers = JOB["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    for model in schedule.models:
        cfg = model_config(schedule, model)
        for uri in (cfg.shard.source, cfg.shard.output, cfg.train.storage_path, cfg.tune.storage_path):
            assert uri.startswith("s3://"), (model.name, uri)
        assert cfg.mlflow.tracking_uri == SECRET["stringData"]["MLFLOW_TRACKING_URI"]
        assert cfg.train.use_gpu is True  # the GPU group starts at 0 pods: only a GPU request scales it up
        assert cfg.train.num_workers <= workers["maxReplicas"]
        (container,) = workers["template"]["spec"]["containers"]
        assert cfg.train.cpus_per_worker < float(container["resources"]["limits"]["cpu"])  # CPUs left for Ray Data


def test_rayjob_lifecycle_fields():
    spec = JOB["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] >= 0
    assert 0 < spec["activeDeadlineSeconds"] < 24 * 3600  # one nightly run ends before the next begins
    assert spec["backoffLimit"] == 0
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)


def test_runtime_env_yaml_is_the_project_runtime_env_minus_the_upload():
    project = yaml.safe_load((INFRA / "runtime_env.yaml").read_text())
    inline = yaml.safe_load(JOB["spec"]["runtimeEnvYAML"])
    assert isinstance(inline, dict)
    assert inline == {k: v for k, v in project.items() if k not in ("working_dir", "excludes")}


_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")
_CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _valid_cron(expr: str) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, _CRON_RANGES):
        for part in field.split(","):
            if not _CRON_FIELD.match(part):
                return False
            if any(not low <= int(n) <= high for n in re.findall(r"(?<!/)\b\d+", part)):
                return False
    return True


def test_cron_helper():
    assert _valid_cron("0 2 * * *") and _valid_cron("*/15 0-6 1,15 * 1-5")
    assert not _valid_cron("0 2 * *") and not _valid_cron("60 2 * * *") and not _valid_cron("@daily")


def test_schedules():
    assert CRON["spec"]["schedule"] == "0 2 * * *" and _valid_cron(CRON["spec"]["schedule"])
    assert CRON["spec"]["jobTemplate"]["entrypoint"].split()[:3] == ["python", "-m", "jobs.nightly"]
    assert _valid_cron(FALLBACK["spec"]["schedule"])
    assert FALLBACK["spec"]["concurrencyPolicy"] == "Forbid"


def test_fallback_rbac_allows_creating_rayjobs():
    docs = MANIFESTS["cronjob-fallback.yaml"]
    role = next(d for d in docs if d["kind"] == "Role")
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert any("ray.io" in r["apiGroups"] and "rayjobs" in r["resources"] and {"create", "get"} <= set(r["verbs"])
               for r in role["rules"])
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert {"kind": "ServiceAccount", "name": account["metadata"]["name"]} in binding["subjects"]
    pod = FALLBACK["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_secrets_only_by_reference():
    # The example Secrets hold placeholders only.
    assert SECRET["metadata"]["name"] == SECRET_NAME
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_TRACKING_URI",
                "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        assert key in SECRET["stringData"]
    for secret in (SECRET, SERVER_SECRET):
        assert all(v.startswith("<") for k, v in secret["stringData"].items() if SECRET_KEYS.match(k)), secret
    # Nowhere else: no Secret objects, no literal credential env values, no credentials in any runtime env.
    for name, docs in MANIFESTS.items():
        for doc in docs:
            if name != "secrets.example.yaml":
                assert doc["kind"] != "Secret", name
            for _, node in _walk(doc):
                if "name" in node and SECRET_KEYS.match(str(node["name"])):
                    assert "value" not in node and "secretKeyRef" in node.get("valueFrom", {}), f"{name}: {node}"
    for runtime_env in (yaml.safe_load((INFRA / "runtime_env.yaml").read_text()),
                        yaml.safe_load(JOB["spec"]["runtimeEnvYAML"]),
                        yaml.safe_load(CRON["spec"]["jobTemplate"]["runtimeEnvYAML"])):
        assert not any(SECRET_KEYS.match(k) for k in runtime_env.get("env_vars", {}))
    # Every Ray pod (head and workers, long-lived and per-job) gets the Secret by envFrom.
    for spec in (CLUSTER["spec"], JOB["spec"]["rayClusterSpec"], CRON["spec"]["jobTemplate"]["rayClusterSpec"]):
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for group in groups:
            for container in group["template"]["spec"]["containers"]:
                refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
                assert refs == [SECRET_NAME], container["name"]


RAY_UP = INFRA / "ray-up" / "aws.yaml"


def test_ray_up_config_is_valid_for_rays_cluster_launcher_and_matches_the_k8s_cluster():
    """`ray up` config: Ray's own schema for cluster configs accepts it; same image, a head without work, GPU
    workers from 0, no credentials in the file."""
    import json

    import jsonschema
    import ray.autoscaler

    config = yaml.safe_load(RAY_UP.read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict: a misspelt key is an error
        jsonschema.validate({**config, "max_worker": 4}, schema)
    assert config["docker"]["image"] == IMAGE
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert any("--head" in c and "--num-cpus=0" in c for c in config["head_start_ray_commands"])
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    assert [w["min_workers"] for w in workers] == [0] and workers[0]["max_workers"] <= config["max_workers"]
    options = " ".join(config["docker"]["run_options"])
    assert "RAY_AUTH_MODE=" in options and "--env-file" in options
    env_file = options.split("--env-file", 1)[1].split()[0]
    assert env_file in config["file_mounts"]  # the env file the container reads is the one synced to the node
    assert not re.search(r"(AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|MLFLOW_TRACKING_PASSWORD)\s*[=:]",
                         RAY_UP.read_text())


# --- the production schedule evaluates with the standard nets, from weights the image provides ---------------------
CLUSTER_SCHEDULE = ROOT / "jobs" / "configs" / "nightly_cluster.yaml"


def _dockerfile_arg(name: str) -> str:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE.read_text(), re.M))[name]


def _weights_check() -> str:
    """The Python the image build runs to load the baked-in weights (the RUN python -c "..." naming them)."""
    text = DOCKERFILE.read_text().replace("\\\n", "")
    (code,) = [c for c in re.findall(r'^RUN python -c "(.*)"\s*$', text, re.M) if "WEIGHTS_DIR" in c]
    return code


def test_production_schedule_evaluates_with_the_standard_weights_the_image_bakes():
    from pipelines import metrics
    from pipelines.nightly import load_schedule, model_config

    weights_dir = _dockerfile_arg("WEIGHTS_DIR")
    assert weights_dir == "/home/ray/.cache/torch/hub/checkpoints"  # user ray's torch cache: metrics' fallback too
    assert re.search(r"^COPY\s+--chown=\S+\s+infra/docker/weights/\s+\$\{WEIGHTS_DIR\}/\s*$", DOCKERFILE.read_text(),
                     re.M)
    assert (INFRA / "docker" / "weights" / ".gitignore").is_file()  # the build context has the folder; no weights in git
    schedule = load_schedule(str(CLUSTER_SCHEDULE))
    for model in schedule.models:
        cfg = model_config(schedule, model)
        ev = cfg.evaluate
        assert (ev.feature_net, ev.lpips_backbone) == ("inception", "alex"), model.name  # never the `tiny` nets
        assert ev.inception_weights == f"{weights_dir}/{metrics.INCEPTION_FILE}", model.name
        assert ev.lpips_weights == f"{weights_dir}/{metrics.ALEXNET_FILE}", model.name
        assert not cfg.tune.enabled or cfg.tune.feature_net == "inception", model.name


def test_image_build_fails_without_the_weights(tmp_path, monkeypatch):
    """The build's check, run as written with an empty WEIGHTS_DIR: it fails and names the missing file."""
    code = _weights_check().replace("${WEIGHTS_DIR}", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached copy to fall back to
    with pytest.raises(FileNotFoundError, match=f"not found at {tmp_path}/weights-inception-2015-12-05-6726825d.pth"):
        exec(compile(code, "Dockerfile RUN", "exec"), {})


# --- MLflow behind its basic-auth app; the jobs log in with the standard variables ----------------------------------
MLFLOW = {d["kind"]: d for d in MANIFESTS["mlflow.yaml"]}


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def read_auth_config(ini_text: str, tmp_path, monkeypatch):
    """MLflow's own reader of basic_auth.ini (mlflow/server/auth/config.py, loaded alone: the auth package itself
    needs Flask-WTF) on ``ini_text``."""
    import importlib.util

    origin = Path(importlib.util.find_spec("mlflow.server").origin).parent / "auth" / "config.py"
    spec = importlib.util.spec_from_file_location("_mlflow_auth_config", origin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "basic_auth.ini").write_text(ini_text)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "basic_auth.ini"))
    for var in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return module.read_auth_config()


def test_mlflow_server_runs_the_basic_auth_app_at_the_url_the_jobs_use(tmp_path, monkeypatch):
    from urllib.parse import urlparse

    deploy, service, config = MLFLOW["Deployment"], MLFLOW["Service"], MLFLOW["ConfigMap"]
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["command"]
    assert args[:2] == ["mlflow", "server"] and _flag(args, "--app-name") == "basic-auth"
    # the URL the jobs use (i2i-env, nightly_cluster.yaml) is this Service, and MLflow accepts it as a Host header
    url = urlparse(SECRET["stringData"]["MLFLOW_TRACKING_URI"])
    namespace = service["metadata"]["namespace"]
    assert url.hostname == f"{service['metadata']['name']}.{namespace}.svc.cluster.local" and url.username is None
    (port,) = service["spec"]["ports"]
    assert url.port == port["port"]
    (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert int(_flag(args, "--port")) == target["containerPort"] and _flag(args, "--host") == "0.0.0.0"
    assert url.netloc in _flag(args, "--allowed-hosts").split(",")
    assert service["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"].items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
    assert {d["metadata"].get("namespace") for d in MANIFESTS["mlflow.yaml"] if d["kind"] != "Namespace"} == {
        MLFLOW["Namespace"]["metadata"]["name"]} == {namespace}
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"  # the one route the auth app leaves open
    # the auth config is the mounted ConfigMap's file, as MLflow's reader parses it
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    config_path = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    mounts = {Path(m["mountPath"]): m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[config_path.parent]]["configMap"]["name"] == config["metadata"]["name"]
    auth = read_auth_config(config["data"][config_path.name], tmp_path, monkeypatch)
    assert auth.default_permission == "READ" and auth.admin_username == "admin" and auth.admin_password is None
    # users, runs and the registry persist on the claim; one replica, replaced not rolled (sqlite has one writer)
    (data_dir,) = [p for p, name in mounts.items() if "persistentVolumeClaim" in volumes[name]]
    assert volumes[mounts[data_dir]]["persistentVolumeClaim"]["claimName"] == MLFLOW["PersistentVolumeClaim"][
        "metadata"]["name"]
    for uri in (auth.database_uri, _flag(args, "--backend-store-uri")):
        assert uri.startswith(f"sqlite:///{data_dir}/"), uri
    assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
    # server credentials only from its Secret (admin bootstrap password, CSRF key, artifact store keys)
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == [SERVER_SECRET_NAME]
    assert SERVER_SECRET["metadata"]["namespace"] == namespace
    assert {"MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= set(SERVER_SECRET["stringData"])
    # its image: mlflow.Dockerfile, MLflow with the auth extra at the jobs' pin
    assert container["image"] == f"ghcr.io/OWNER/i2i-mlflow:{_pyproject()['project']['version']}"
    assert '-c /tmp/constraints.txt "mlflow[auth]"' in MLFLOW_DOCKERFILE.read_text()


def test_jobs_read_mlflow_credentials_from_the_standard_variables_in_the_secret():
    from mlflow.environment_variables import MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_USERNAME

    # the names MLflow's client sends as basic auth are the ones the Secret every Ray pod loads holds
    assert {MLFLOW_TRACKING_USERNAME.name, MLFLOW_TRACKING_PASSWORD.name} <= set(SECRET["stringData"])
    # and no config carries them: the schedule's URL has no user-info, no file under infra/ or jobs/configs names a
    # password value
    from pipelines.nightly import load_schedule

    schedule = load_schedule(str(CLUSTER_SCHEDULE))
    assert "@" not in schedule.set["mlflow.tracking_uri"]
    for path in [*ALL_YAML, *sorted((ROOT / "jobs" / "configs").glob("*.yaml"))]:
        assert not re.search(r"MLFLOW_TRACKING_PASSWORD\s*[=:]\s*[^\s<\"]", path.read_text()), path

"""The registry format runs no code from storage: a version is a models-from-code pyfunc over the ``save_pretrained``
folder; ``mlflow.pyfunc.load_model`` works in a fresh process; every project path (translate, evaluate --model, the
promotion gate) loads through ``register.load_model``, which refuses a pickled model or a weights file holding
objects — and the payload never runs."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import mlflow
import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.pyfunc import PythonModel

from i2i_models.registry import get_model
from jobs.cli import main as i2i
from pipelines import tracking
from pipelines.errors import RegistryError
from pipelines.register import PRETRAINED_ARTIFACT, PYFUNC_FILE, load_model, run_register


class _Touch:
    """Unpickling this runs ``Path(marker).touch()``: the stand-in for an attacker's payload."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


class EvilModel(PythonModel):
    """A cloudpickled pyfunc whose unpickling runs the payload (what an alias moved to a crafted version serves)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)

    def predict(self, context, model_input, params=None):
        return model_input


class EvilNet(torch.nn.Module):
    """A pickled torch model (``mlflow.pytorch``, the format i2i used to register) carrying the payload."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture
def sqlite_mlflow(tmp_path):
    return tracking.MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="register-test")


def _new_run(cfg: tracking.MlflowConfig) -> str:
    return tracking.client(cfg).create_run(tracking.experiment_id(cfg)).info.run_id


def _register_crafted(cfg: tracking.MlflowConfig, name: str, marker: pathlib.Path, kind: str) -> str:
    """A version of ``name`` aliased ``champion`` whose artifact is a malicious pickle (``kind`` "pytorch": a pickled
    torch model; "pyfunc": a cloudpickled pyfunc; "weights": an i2i-shaped folder whose nets.pt is the pickle)."""
    c = tracking.client(cfg)
    with mlflow.start_run(run_id=_new_run(cfg)):
        if kind == "pytorch":
            info = mlflow.pytorch.log_model(EvilNet(str(marker)), name="model", serialization_format="pickle",
                                            registered_model_name=name, pip_requirements=["torch"])
        elif kind == "pyfunc":
            info = mlflow.pyfunc.log_model(name="model", python_model=EvilModel(str(marker)),
                                           registered_model_name=name, pip_requirements=["numpy"])
        else:
            folder = marker.parent / "crafted" / PRETRAINED_ARTIFACT
            get_model("cyclegan", image_size=32, ngf=4, ndf=4).save_pretrained(str(folder))
            torch.save({"G_ab": _Touch(str(marker))}, folder / "nets.pt")
            info = mlflow.pyfunc.log_model(name="model", python_model=PYFUNC_FILE,
                                           artifacts={PRETRAINED_ARTIFACT: str(folder)}, registered_model_name=name,
                                           pip_requirements=["torch"])
    c.set_registered_model_alias(name, "champion", str(info.registered_model_version))
    marker.unlink(missing_ok=True)  # logging may have touched it in this process: only loading counts
    return f"models:/{name}@champion"


def test_registered_version_is_a_pyfunc_without_pickles_that_loads_in_a_fresh_process(mlflow_server, tmp_path):
    """Registered on the real tracking server (artifacts proxied to S3); a fresh Python loads it the ordinary way."""
    cfg = tracking.MlflowConfig(tracking_uri=mlflow_server, experiment="register-format")
    model = get_model("cyclegan", image_size=32, ngf=4, ndf=4)
    model.save_pretrained(str(tmp_path / "ckpt"))
    reg = run_register(checkpoint=str(tmp_path / "ckpt"), model="cyclegan", dataset="fmt", mlflow=cfg,
                       run_id=_new_run(cfg))
    uri = "models:/i2i-cyclegan-fmt@challenger"
    local = mlflow.artifacts.download_artifacts(artifact_uri=reg.model_uri, dst_path=str(tmp_path / "dl"))
    files = {str(p.relative_to(local)) for p in pathlib.Path(local).rglob("*") if p.is_file()}
    assert {"MLmodel", "pyfunc_model.py", f"artifacts/{PRETRAINED_ARTIFACT}/config.json",
            f"artifacts/{PRETRAINED_ARTIFACT}/nets.pt"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pth"))], files  # no cloudpickled model
    assert "model_code_path" in pathlib.Path(local, "MLmodel").read_text()

    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 32, 32)).astype("float32")
    expected = load_model(uri, cfg).translate(torch.from_numpy(x), direction="b2a").numpy()
    code = ("import sys, mlflow, numpy as np; mlflow.set_tracking_uri(sys.argv[1]);"
            "m = mlflow.pyfunc.load_model(sys.argv[2]);"
            "np.save(sys.argv[4], m.predict(np.load(sys.argv[3]), params={'direction': 'b2a'}))")
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-c", code, mlflow_server, uri, str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def test_register_rerun_repairs_a_version_left_untagged_by_a_crash(sqlite_mlflow, tmp_path):
    """A crash after the version was created but before its tags/alias: the re-run reuses that version (no second
    one) and applies what was missing."""
    from pipelines.evaluate import EvalResult

    get_model("pix2pix", image_size=32, ngf=4, ndf=4).save_pretrained(str(tmp_path / "ckpt"))
    run_id = _new_run(sqlite_mlflow)
    first = run_register(checkpoint=str(tmp_path / "ckpt"), model="pix2pix", dataset="crash", mlflow=sqlite_mlflow,
                         run_id=run_id)
    c = tracking.client(sqlite_mlflow)
    for key in list(c.get_model_version(first.name, first.version).tags):  # the crash: tags and alias never set
        c.delete_model_version_tag(first.name, first.version, key)
    c.delete_registered_model_alias(first.name, "challenger")
    ev = EvalResult(metrics={"l1": 0.25}, dataset="/shards/crash", dataset_id="c" * 16, split="val", samples=4)
    again = run_register(checkpoint=str(tmp_path / "ckpt"), model="pix2pix", dataset="crash", mlflow=sqlite_mlflow,
                         run_id=run_id, eval_result=ev)
    assert again.version == first.version and len(c.search_model_versions(f"name='{first.name}'")) == 1
    tags = c.get_model_version(first.name, first.version).tags
    assert tags["eval.l1"] == "0.25" and tags["eval.dataset_id"] == "c" * 16 and tags["i2i.model"] == "pix2pix"
    assert str(c.get_model_version_by_alias(first.name, "challenger").version) == first.version


@pytest.mark.parametrize("kind", ["pytorch", "pyfunc", "weights"])
def test_a_malicious_pickle_is_refused_by_translate_evaluate_and_the_gate_and_never_runs(kind, sqlite_mlflow, tmp_path,
                                                                                capsys):
    marker = tmp_path / "PAYLOAD_RAN"
    uri = _register_crafted(sqlite_mlflow, f"evil-{kind}", marker, kind)
    expected = "holds more than tensors" if kind == "weights" else "is not an i2i model"
    sets = ["--set", f"mlflow.tracking_uri={sqlite_mlflow.tracking_uri}"]
    (tmp_path / "in").mkdir()
    code = i2i(["translate", "--model", uri, str(tmp_path / "in"), str(tmp_path / "out"), *sets])
    err = capsys.readouterr()
    assert code == 2 and expected in err.err and json.loads(err.out)["status"] == "failed", err
    code = i2i(["evaluate", "--model", uri, "--set", f"train.dataset={tmp_path}/shards", *sets])
    err = capsys.readouterr()
    assert code == 2 and expected in err.err, err
    with pytest.raises(RegistryError, match=expected):
        load_model(uri, sqlite_mlflow)

    # the gate: an evaluated challenger against the crafted champion, which has no recorded score under the
    # challenger's fingerprint, so the gate must load it to re-evaluate it — and refuses, champion unchanged
    from pipelines.evaluate import EvaluateConfig
    from pipelines.promote import PromoteConfig, run_promote
    from tests.conftest import recorded_evaluation, register_version

    name = f"evil-{kind}"
    good = get_model("pix2pix", image_size=32, ngf=4, ndf=4)
    good.save_pretrained(str(tmp_path / "good"))
    eval_cfg = EvaluateConfig(feature_net="tiny", lpips_backbone="tiny")
    challenger = register_version(sqlite_mlflow, str(tmp_path / "good"), name=name, evaluation=recorded_evaluation(
        good, {"l1": 0.1}, str(tmp_path / "shards"), "e" * 16, eval_cfg))
    champion = str(tracking.client(sqlite_mlflow).get_model_version_by_alias(name, "champion").version)
    with pytest.raises(RegistryError, match=expected):
        run_promote(name=name, mlflow=sqlite_mlflow, cfg=PromoteConfig(metric="l1"), eval_cfg=eval_cfg,
                    version=challenger.version)
    assert str(tracking.client(sqlite_mlflow).get_model_version_by_alias(name, "champion").version) == champion
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "out").exists()

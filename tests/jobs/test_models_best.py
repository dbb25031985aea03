"""`i2i models best --dataset D` against a real MLflow tracking server: the best registered version across every
family trained on D, compared only under one evaluation fingerprint; every other version is listed as skipped, with
why. Tiny CycleGAN / UNIT / MUNIT versions with recorded evaluations (no training, no evaluation run)."""

import json
import uuid

import pytest

from jobs.cli import main as i2i


@pytest.fixture(scope="module")
def winter(mlflow_server, tmp_path_factory):
    """Versions of three families trained on one dataset: returns (dataset, --set args, fingerprints)."""
    from i2i_models.registry import get_model
    from pipelines import tracking
    from pipelines.evaluate import EvaluateConfig
    from tests.conftest import recorded_evaluation, register_version

    root, tag = tmp_path_factory.mktemp("best"), uuid.uuid4().hex[:8]
    dataset, data_id = f"winter{tag}", "w" * 16
    cfg = tracking.MlflowConfig(tracking_uri=mlflow_server, experiment=f"best-{tag}")
    client = tracking.client(cfg)
    tiny = {"cyclegan": dict(image_size=32, ngf=8, ndf=8, n_blocks=2),
            "unit": dict(image_size=32, dim=8, n_res=2, dis_dim=8, dis_n_layer=3),
            "munit": dict(image_size=32, dim=8, n_res=2, mlp_dim=16, dis_dim=8, dis_n_layer=3)}
    models = {}
    for family, args in tiny.items():
        models[family] = get_model(family, **args)
        models[family].save_pretrained(str(root / family))
    same = EvaluateConfig(feature_net="tiny", lpips_backbone="tiny")
    versions = [  # (family, metrics or None: not evaluated, champion)
        ("cyclegan", {"fid": 50.0, "psnr": 20.0}, True), ("cyclegan", {"fid": 30.0}, False),
        ("unit", {"fid": 40.0, "psnr": 25.0}, True), ("unit", None, False),
        ("munit", {"fid": 5.0}, True),  # multimodal: its fingerprint has num_styles and LPIPS (other numbers)
    ]
    fingerprints = {}
    for family, metrics, champion in versions:
        ev = None if metrics is None else recorded_evaluation(models[family], metrics, f"/shards/{dataset}",
                                                              data_id, same)
        reg = register_version(cfg, str(root / family), ev, model=family, dataset=dataset)
        if champion:
            client.set_registered_model_alias(reg.name, "champion", reg.version)
        fingerprints[reg.model_uri] = ev.fingerprint if ev else None
    # another dataset's version, evaluated under the same fingerprint with the lowest fid: never compared (a copy of
    # the CycleGAN champion's version, tagged with another dataset; registering it again would cost seconds)
    copy = client.copy_model_version(f"models:/i2i-cyclegan-{dataset}/1", f"i2i-cyclegan-other{tag}")
    for k, v in {"i2i.dataset": f"other{tag}", "eval.fid": "1.0"}.items():
        client.set_model_version_tag(copy.name, copy.version, k, v)
    return dataset, ["--set", f"mlflow.tracking_uri={mlflow_server}"], fingerprints


def best(capsys, *args) -> tuple[int, dict]:
    code = i2i(["models", "best", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_best_across_families_under_one_eval_fingerprint(winter, capsys):
    dataset, sets, fps = winter
    cg, unit, munit = (f"models:/i2i-{f}-{dataset}" for f in ("cyclegan", "unit", "munit"))
    code, out = best(capsys, "--dataset", dataset, "--metric", "fid", *sets)
    assert code == 0 and out["status"] == "succeeded" and out["lower_is_better"]
    # compared: the fingerprint two families share; the best is not a champion, and not the lowest fid overall
    assert out["fingerprint"] == fps[f"{cg}/1"] == fps[f"{unit}/1"] and out["families"] == ["cyclegan", "unit"]
    assert (out["best_model_uri"], out["best_value"]) == (f"{cg}/2", 30.0)
    assert [(r["model_uri"], r["value"]) for r in out["compared"]] == [(f"{cg}/2", 30.0), (f"{unit}/1", 40.0),
                                                                       (f"{cg}/1", 50.0)]
    assert [r["aliases"] for r in out["compared"]] == [["challenger"], ["champion"], ["champion"]]
    reasons = {s["model_uri"]: s["reason"] for s in out["skipped"]}
    assert set(reasons) == {f"{unit}/2", f"{munit}/1"}  # the other dataset's version is not listed
    assert reasons[f"{unit}/2"] == "not evaluated (no eval fingerprint)"
    assert reasons[f"{munit}/1"].startswith(f"other eval fingerprint {fps[f'{munit}/1']}, not {out['fingerprint']} "
                                            "(differs in ") and "num_styles None→" in reasons[f"{munit}/1"]

    # higher is better for psnr: the UNIT champion; the versions without psnr are skipped as such
    code, out = best(capsys, "--dataset", dataset, "--metric", "psnr", *sets)
    assert out["best_model_uri"] == f"{unit}/1" and not out["lower_is_better"]
    assert [r["value"] for r in out["compared"]] == [25.0, 20.0]
    assert {s["model_uri"] for s in out["skipped"] if s["reason"].startswith("no eval.psnr")} == {
        f"{cg}/2", f"{munit}/1"}
    # champions only: one per family
    code, out = best(capsys, "--dataset", dataset, "--metric", "fid", "--champions-only", *sets)
    assert out["best_model_uri"] == f"{unit}/1" and [r["model_uri"] for r in out["compared"]] == [f"{unit}/1",
                                                                                                  f"{cg}/1"]
    assert [s["model_uri"] for s in out["skipped"]] == [f"{munit}/1"]
    # another fingerprint, chosen explicitly
    code, out = best(capsys, "--dataset", dataset, "--metric", "fid", "--fingerprint", fps[f"{munit}/1"], *sets)
    assert out["best_model_uri"] == f"{munit}/1" and out["families"] == ["munit"]

    # a terminal gets the tables
    assert i2i(["models", "best", "--dataset", dataset, "--metric", "fid", *sets]) == 0
    text = capsys.readouterr().out
    assert f"best_model_uri: {cg}/2" in text and "compared:" in text and "skipped:" in text


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nope-dataset", "--metric", "fid"], "no registered i2i model was trained on dataset 'nope-dataset'"),
    (["--dataset", "{dataset}", "--metric", "nope"], "unknown metric 'nope'"),
    (["--dataset", "{dataset}", "--metric", "fid", "--fingerprint", "0123"], "was measured under eval fingerprint 0123"),
])
def test_best_across_errors_are_one_line_and_exit_2(winter, capsys, args, message):
    dataset, sets, _ = winter
    code = i2i(["models", "best", *(a.format(dataset=dataset) for a in args), *sets, "--json"])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert json.loads(captured.out)["status"] == "failed"

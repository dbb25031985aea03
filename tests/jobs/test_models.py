"""`i2i models …` against a real MLflow registry (sqlite file): four tiny registered pix2pix versions, promoted
through the gate, forced, rolled back; best-by-metric in both directions, among versions measured under the same
evaluation fingerprint only; errors are one line and exit 2."""

import json

import pytest

from jobs.cli import main as i2i

NAME = "i2i-pix2pix-demo"
# v3 was evaluated on other data than v1 and v2; v2 has no ssim; v4 on v1's data but with another metric config
# (kid_subset_size), so its "best" l1 is not comparable with theirs
EVALS = {"1": ({"l1": 0.30, "psnr": 21.0, "ssim": 0.5}, "d1", 1000), "2": ({"l1": 0.20, "psnr": 19.0}, "d1", 1000),
         "3": ({"l1": 0.05, "psnr": 30.0, "ssim": 0.9}, "d2", 1000),
         "4": ({"l1": 0.01, "psnr": 40.0, "ssim": 0.99}, "d1", 50)}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """Four registered versions of a tiny pix2pix; returns the ``--set`` args that point a command at them."""
    from i2i_models.registry import get_model
    from pipelines import tracking
    from pipelines.evaluate import EvaluateConfig
    from tests.conftest import recorded_evaluation, register_version

    root = tmp_path_factory.mktemp("registry")
    cfg = tracking.MlflowConfig(tracking_uri=f"sqlite:///{root}/mlflow.db", experiment="models-test")
    model = get_model("pix2pix", image_size=32, ngf=8, ndf=8)
    model.save_pretrained(str(root / "ckpt"))
    for version, (metrics, dataset_id, kid_subset_size) in EVALS.items():
        ev = recorded_evaluation(model, metrics, f"/shards/{dataset_id}", dataset_id * 8,
                                 EvaluateConfig(feature_net="tiny", kid_subset_size=kid_subset_size))
        nightly = {"i2i.dataset_version": "2026-11-0" + version} if version != "1" else {}  # v1: not a nightly
        reg = register_version(cfg, str(root / "ckpt"), ev, tags={"i2i.dataset_id": dataset_id * 8, **nightly})
        assert reg.version == version
    return ["--set", f"mlflow.tracking_uri={cfg.tracking_uri}"], tracking.client(cfg)


def cli(capsys, *args) -> tuple[int, dict]:
    code = i2i(["models", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_gate_force_rollback_history_and_best(registry, capsys):
    sets, c = registry
    code, out = cli(capsys, "promote", NAME, "1", *sets)
    assert code == 0 and out["decision"] == "promoted" and out["reason"] == "no champion yet"
    code, out = cli(capsys, "promote", NAME, "2", *sets, "--set", "promote.metric=l1")
    assert out["decision"] == "promoted" and out["challenger_score"] == 0.2 and out["champion_score"] == 0.3
    code, out = cli(capsys, "promote", NAME, "1", *sets)  # worse than the champion: the gate keeps v2
    assert code == 0 and out["decision"] == "kept" and str(c.get_model_version_by_alias(NAME, "champion").version) == "2"

    code, out = cli(capsys, "promote", NAME, "3", "--force", "--reason", "hotfix", *sets)
    assert code == 0 and out["champion_version"] == "3" and out["previous_version"] == "2" and out["kind"] == "forced"
    tags = c.get_model_version(NAME, "3").tags
    assert tags["promotion.forced"] == "true" and tags["promotion.reason"] == "hotfix"
    assert tags["promotion.by"] and tags["promotion.at"].endswith("+00:00")
    # the champion (v3) was evaluated on other data: only v3 is ranked, the others are skipped
    code, out = cli(capsys, "best", NAME, "--metric", "l1", *sets)
    assert out["dataset_from"] == "champion v3" and out["dataset_id"] == "d2" * 8 and out["best_version"] == "3"
    assert {s["version"] for s in out["skipped"]} == {"1", "2", "4"}

    code, out = cli(capsys, "rollback", NAME, *sets)
    assert code == 0 and out["champion_version"] == "2" and out["previous_version"] == "3"
    code, out = cli(capsys, "rollback", NAME, "--reason", "v2 regressed", *sets)
    assert out["champion_version"] == "1" and str(c.get_model_version_by_alias(NAME, "champion").version) == "1"
    code = i2i(["models", "rollback", NAME, *sets])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "no previous champion" in captured.err
    assert len(captured.err.strip().splitlines()) == 1

    code, out = cli(capsys, "history", NAME, *sets)
    assert out["source"] == "i2i.champion_history" and out["current_champion"] == "1"
    entries = out["entries"]
    assert [e["version"] for e in entries] == ["1", "2", "3", "2", "1"]
    assert [e["kind"] for e in entries] == ["promoted", "promoted", "forced", "rollback", "rollback"]
    assert [e["previous"] for e in entries] == [None, "1", "2", "3", "2"]  # each change names the one it replaced
    assert entries[0]["reason"] == "no champion yet" and "l1 0.2 vs champion v1 0.3" in entries[1]["reason"]
    assert entries[2]["reason"] == "hotfix" and entries[3]["reason"] == "rollback from v3"
    assert entries[4]["reason"] == "v2 regressed"
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)

    # best, champion v1 on d1: l1 lower is better → v2; psnr higher is better → v1; v2 has no ssim. v4 (same data,
    # other kid_subset_size, so another fingerprint) is never ranked with them, though its l1 is the lowest
    code, out = cli(capsys, "best", NAME, "--metric", "l1", *sets)
    assert code == 0 and out["dataset_from"] == "champion v1" and out["lower_is_better"]
    assert out["best_version"] == "2" and [r["version"] for r in out["ranked"]] == ["2", "1"]
    fingerprints = {v: c.get_model_version(NAME, v).tags["eval.fingerprint"] for v in EVALS}
    assert out["fingerprint"] == fingerprints["1"] == fingerprints["2"] != fingerprints["4"]
    assert out["skipped"] == [{"version": "3", "reason": "evaluated on other data"},
                              {"version": "4", "reason": f"other eval config (fingerprint {fingerprints['4']}, not "
                                                         f"{fingerprints['1']})"}]
    code, out = cli(capsys, "best", NAME, "--metric", "psnr", *sets)
    assert out["best_version"] == "1" and out["best_value"] == 21.0 and not out["lower_is_better"]
    code, out = cli(capsys, "best", NAME, "--metric", "ssim", *sets)
    assert out["best_version"] == "1" and {"version": "2", "reason": "no eval.ssim"} in out["skipped"]

    # list: every version, its aliases, and what it was judged on
    code, out = cli(capsys, "list", *sets)
    rows = {r["version"]: r for r in out["versions"] if r["model"] == NAME}
    assert set(rows) == {"1", "2", "3", "4"} and rows["1"]["aliases"] == ["champion"]
    assert rows["2"]["judged_on"] == "l1=0.2" and rows["3"]["judged_on"].startswith("l1=0.05 psnr=30")
    # a terminal gets a table
    assert i2i(["models", "list", NAME, *sets]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["model", "version", "aliases", "judged_on", "dataset_id", "trained_on"]
    assert any(line.split()[:3] == [NAME, "1", "champion"] for line in table)
    trained_on = {line.split()[1]: line.split()[-1] for line in table[2:] if line.split()[:1] == [NAME]}
    assert trained_on == {"1": "d1d1d1d1d1d1", "2": "2026-11-02", "3": "2026-11-03", "4": "2026-11-04"}

    # models promoted before the history tag existed: history from the versions' promotion.* tags
    c.delete_registered_model_tag(NAME, "i2i.champion_history")
    code, out = cli(capsys, "history", NAME, *sets)
    assert out["source"] == "promotion.* tags"
    assert [(e["version"], e["kind"]) for e in out["entries"]] == [("2", "promoted"), ("3", "forced")]


@pytest.mark.parametrize("args, message", [
    (["list", "i2i-nope"], "no registered model 'i2i-nope' (registered: i2i-pix2pix-demo)"),
    (["history", "i2i-nope"], "no registered model 'i2i-nope'"),
    (["promote", NAME, "9"], f"{NAME} has no version '9' (versions: 1, 2, 3, 4)"),
    (["promote", NAME, "9", "--force"], f"{NAME} has no version '9'"),
    (["best", NAME, "--metric", "nope"], "unknown metric 'nope'"),
])
def test_unknown_model_version_or_metric_is_one_line_and_exit_2(registry, capsys, args, message):
    sets, _ = registry
    for fmt in ([], ["--json"]):
        code = i2i(["models", *args, *sets, *fmt])
        captured = capsys.readouterr()
        assert code == 2 and message in captured.err and len(captured.err.strip().splitlines()) == 1
        if fmt:
            assert json.loads(captured.out) == {"status": "failed", "error": captured.err.strip()[len("error: "):]}

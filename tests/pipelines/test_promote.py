"""The promotion gate against a real MLflow server (and a sqlite registry): unlike evaluation fingerprints are never
compared as equals (the champion, and where the weights differ the challenger too, is re-evaluated); registry errors
fail the step with the champion unchanged; an unset alias is "no champion"; two promoters racing give one winner;
an un-evaluated challenger is refused; the champion history stays within MLflow's tag limit and loses nothing."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from i2i_models.registry import get_model
from jobs.cli import main as i2i
from pipelines import champion, evaluate, tracking
from pipelines.errors import RegistryError
from pipelines.evaluate import EvalResult, EvaluateConfig, evaluate_model, eval_tags, fingerprint_spec
from pipelines.promote import PromoteConfig, run_promote
from pipelines.registry_ops import champion_history
from tests.conftest import free_ports, recorded_evaluation, register_version
from tests.i2i_models.test_contract import TINY
from tests.pipelines.test_evaluate import edge_shards, winter_shards  # noqa: F401 - module fixtures

FAST = dict(feature_net="tiny", lpips_backbone="tiny", batch_size=8)


def fresh_name() -> str:
    return f"i2i-gate-{uuid.uuid4().hex[:8]}"  # each test its own registered model: independent of order


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    """Tiny pix2pix checkpoints: ``plain`` (untrained) and ``black`` (outputs -1 everywhere: clearly worse)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    plain = get_model("pix2pix", **TINY["pix2pix"])
    plain.save_pretrained(str(root / "plain"))
    black = get_model("pix2pix", **TINY["pix2pix"])
    with torch.no_grad():
        black.nets["G"].model.model[3].bias.fill_(-10.0)  # outermost transposed conv → tanh → -1
    black.save_pretrained(str(root / "black"))
    return {"plain": str(root / "plain"), "black": str(root / "black"), "model": plain}


@pytest.fixture(scope="module")
def server(mlflow_server) -> tracking.MlflowConfig:
    return tracking.MlflowConfig(tracking_uri=mlflow_server, experiment="promote-test")


def champion_of(cfg: tracking.MlflowConfig, name: str) -> str | None:
    return champion.champion_version(tracking.client(cfg), name, "champion")


def tags_of(cfg: tracking.MlflowConfig, name: str, version: str) -> dict[str, str]:
    return tracking.client(cfg).get_model_version(name, version).tags


# --- like with like ---------------------------------------------------------------------------------------------
def test_fingerprint_names_everything_that_changes_a_number(tmp_path):
    pix2pix, munit = get_model("pix2pix", **TINY["pix2pix"]), get_model("munit", **TINY["munit"])
    base = EvaluateConfig(**FAST)

    def fp(model, split="val", **changes):
        return evaluate.fingerprint_of(fingerprint_spec(base.model_copy(update=changes), "d" * 16, split, model))

    for f in ("inception.pth", "alexnet.pth", "clf.pt"):
        (tmp_path / f).write_bytes(f.encode())  # stand-in weights: only hashed here, never loaded
    cyclegan = get_model("cyclegan", **TINY["cyclegan"])
    assert fp(pix2pix) == fp(pix2pix)  # stable
    unlike = [fp(pix2pix), fp(pix2pix, feature_net="inception", inception_weights=str(tmp_path / "inception.pth")),
              fp(pix2pix, kid_subset_size=50), fp(pix2pix, seed=1), fp(pix2pix, split="test"),
              fp(munit), fp(munit, num_styles=3), fp(munit, batch_size=4),
              fp(munit, lpips_backbone="alex", lpips_weights=str(tmp_path / "alexnet.pth")),
              fp(cyclegan, ground_truth="demo_winter"),
              fp(cyclegan, domain_classifier=str(tmp_path / "clf.pt"))]
    assert len(set(unlike)) == len(unlike) and fp(cyclegan) == fp(pix2pix)  # measured alike: the same
    # another Inception weights file is another feature net
    (tmp_path / "other.pth").write_bytes(b"other weights")
    assert fp(pix2pix, feature_net="inception", inception_weights=str(tmp_path / "inception.pth")) != fp(
        pix2pix, feature_net="inception", inception_weights=str(tmp_path / "other.pth"))
    # settings a model's evaluation does not use do not split it from its peers (no needless re-evaluation)
    assert fp(pix2pix, num_styles=3) == fp(pix2pix, batch_size=4) == fp(pix2pix, lpips_backbone="alex") == fp(pix2pix)
    # the spec gives the config back (paths come from the machine's config)
    spec = fingerprint_spec(base.model_copy(update={"kid_subset_size": 7, "seed": 3}), "d" * 16, "val", munit)
    again = evaluate.config_from_spec(spec, EvaluateConfig())
    assert fingerprint_spec(again, "d" * 16, "val", munit) == spec
    # a result written before fingerprints still loads, and its tags carry no fingerprint (so the gate refuses it)
    old = EvalResult(metrics={"l1": 0.1}, dataset="/x", dataset_id="d", split="val", samples=1)
    assert old.fingerprint == "" and "eval.fingerprint" not in eval_tags(old)


def test_unlike_fingerprints_reevaluate_the_champion(server, checkpoints, edge_shards):  # noqa: F811
    """The champion's kid was recorded with kid_subset_size 1000 (clamped to the split), the challenger's with 3:
    the gate measures the champion again under the challenger's config instead of comparing the two numbers."""
    name = fresh_name()
    cfg_champion, cfg_challenger = EvaluateConfig(**FAST), EvaluateConfig(**FAST, kid_subset_size=3)
    plain = checkpoints["model"]
    recorded = evaluate_model(plain, edge_shards, cfg_champion)
    register_version(server, checkpoints["plain"], recorded, name=name)
    assert run_promote(name=name, mlflow=server, cfg=PromoteConfig(metric="kid"), eval_cfg=EvaluateConfig(),
                       version="1").reason == "no champion yet"
    challenger_eval = evaluate_model(get_model("pix2pix", **TINY["pix2pix"]), edge_shards, cfg_challenger)
    register_version(server, checkpoints["black"], challenger_eval, name=name)
    assert challenger_eval.fingerprint != recorded.fingerprint
    expected = evaluate_model(plain, edge_shards, cfg_challenger).metrics["kid"]
    assert expected != pytest.approx(recorded.metrics["kid"], rel=1e-3)  # else this test could not tell

    # the machine's evaluate config differs from both (defaults): it only says where weights files are
    result = run_promote(name=name, mlflow=server, cfg=PromoteConfig(metric="kid"), eval_cfg=EvaluateConfig(),
                         version="2")
    assert result.reevaluated == ["1"] and result.fingerprint == challenger_eval.fingerprint
    assert result.champion_score == pytest.approx(expected, rel=1e-5)
    assert result.challenger_score == challenger_eval.metrics["kid"]
    assert result.decision == ("promoted" if result.challenger_score < expected else "kept")
    tags = tags_of(server, name, "2")
    assert tags["promotion.reevaluated"] == "1" and tags["promotion.fingerprint"] == challenger_eval.fingerprint
    assert float(tags["promotion.champion_score"]) == result.champion_score
    assert "re-evaluated: v1" in tags["promotion.reason"]


def test_other_weights_here_reevaluate_both(server, winter_shards, tmp_path):  # noqa: F811
    """The challenger's IS was measured with one domain classifier; this machine's config has another file (other
    sha256): measured here the champion has another fingerprint, so the challenger is measured here too and both
    are compared under that one."""
    name = fresh_name()
    classifiers = {}
    for k in ("theirs", "ours"):
        torch.manual_seed(len(k))
        clf = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 3))
        classifiers[k] = str(tmp_path / f"{k}.pt")
        torch.jit.script(clf).save(classifiers[k])
    models = {}
    for k in ("champion", "challenger"):
        torch.manual_seed(len(k))
        models[k] = get_model("cyclegan", **TINY["cyclegan"])
        models[k].save_pretrained(str(tmp_path / k))
    theirs = EvaluateConfig(**FAST, domain_classifier=classifiers["theirs"])
    ours = EvaluateConfig(**FAST, domain_classifier=classifiers["ours"])
    # the champion was measured on other data, so it needs measuring anyway
    register_version(server, str(tmp_path / "champion"), recorded_evaluation(
        models["champion"], {"is": 1.5}, "/elsewhere", "x" * 16, theirs, split="test"), name=name, model="cyclegan")
    recorded = evaluate_model(models["challenger"], winter_shards, theirs)
    register_version(server, str(tmp_path / "challenger"), recorded, name=name, model="cyclegan")
    assert run_promote(name=name, mlflow=server, cfg=PromoteConfig(metric="is"), eval_cfg=theirs, version="1"
                       ).decision == "promoted"

    result = run_promote(name=name, mlflow=server, cfg=PromoteConfig(metric="is"), eval_cfg=ours, version="2")
    here = fingerprint_spec(ours, recorded.dataset_id, recorded.split, models["challenger"])
    assert result.reevaluated == ["1", "2"] and result.fingerprint == evaluate.fingerprint_of(here)
    assert result.fingerprint != recorded.fingerprint
    assert result.challenger_score != recorded.metrics["is"]  # measured again, with our classifier
    tags = tags_of(server, name, "2")
    assert tags["promotion.reevaluated"] == "1,2"
    assert float(tags["promotion.challenger_score"]) == result.challenger_score


# --- fail closed ------------------------------------------------------------------------------------------------
class FlakyRegistry:
    """An HTTP proxy on 127.0.0.1 in front of the MLflow server. Armed with ``blip_after(name, version)``, it lets the
    read of that version through and answers 503 to the next read of registered-model state
    (``GET …/registered-models/…``: the model, its aliases) — a registry outage that starts right after the gate has
    read its challenger, and ends after one request. Everything else is forwarded."""

    def __init__(self, upstream: str):
        proxy = self
        self.armed: str | None = None  # the challenger read that starts the outage
        self.outage = False
        self.failed: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                if proxy.outage and self.command == "GET" and "/mlflow/registered-models/" in self.path:
                    proxy.outage = False
                    proxy.failed.append(self.path)
                    return self._reply(503, b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "503 outage"}',
                                       {"Content-Type": "application/json"})
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(upstream + self.path, data=body, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        status, data, reply_headers = r.status, r.read(), dict(r.headers)
                except urllib.error.HTTPError as err:
                    status, data, reply_headers = err.code, err.read(), dict(err.headers)
                if proxy.armed and self.command == "GET" and "/mlflow/model-versions/get?" in self.path \
                        and proxy.armed in self.path:
                    proxy.armed, proxy.outage = None, True
                return self._reply(status, data, reply_headers)

            def _reply(self, code: int, data: bytes, headers: dict):
                self.send_response(code)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_registry_errors_fail_closed(server, checkpoints, mlflow_server, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once (the default retries for minutes)
    name = fresh_name()
    model = checkpoints["model"]
    worse = recorded_evaluation(model, {"l1": 0.9}, "/shards/d", "d" * 16, EvaluateConfig(**FAST))
    better = recorded_evaluation(model, {"l1": 0.1}, "/shards/d", "d" * 16, EvaluateConfig(**FAST))
    register_version(server, checkpoints["black"], worse, name=name)
    run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=EvaluateConfig(), version="1")
    register_version(server, checkpoints["plain"], better, name=name)
    flaky = FlakyRegistry(mlflow_server)
    try:
        through = tracking.MlflowConfig(tracking_uri=flaky.uri, experiment="promote-test")
        flaky.armed = f"name={name}&version=2"
        with pytest.raises(RegistryError, match="503"):
            run_promote(name=name, mlflow=through, cfg=PromoteConfig(), eval_cfg=EvaluateConfig(), version="2")
        assert len(flaky.failed) == 1  # the outage hit the champion read
        assert champion_of(server, name) == "1"  # not "no champion yet → promoted"
        tags = tags_of(server, name, "2")
        assert tags["promotion.decision"] == "error" and "503" in tags["promotion.reason"]
        # the outage is over: the re-run completes
        assert run_promote(name=name, mlflow=through, cfg=PromoteConfig(), eval_cfg=EvaluateConfig(), version="2"
                           ).decision == "promoted"
        assert champion_of(server, name) == "2"
        again = run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=EvaluateConfig(), version="2")
        assert again.decision == "promoted" and again.reason.startswith("already the champion (promoted at")
    finally:
        flaky.close()
        tracking.client(server)  # the process-wide tracking URI back to the real server
    # MLflow unreachable altogether: the job exits 2 with one line, nothing changed
    (closed,) = free_ports(1)
    capsys.readouterr()
    code = i2i(["models", "promote", name, "1", "--set", f"mlflow.tracking_uri=http://127.0.0.1:{closed}"])
    err = capsys.readouterr().err
    assert code == 2 and "MLflow failed" in err and len(err.strip().splitlines()) == 1
    assert champion_of(server, name) == "2"


@pytest.mark.parametrize("store", ["server", "sqlite"])
def test_an_unset_alias_is_no_champion(store, server, checkpoints, tmp_path):
    from mlflow.exceptions import MlflowException

    cfg = server if store == "server" else tracking.MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    name = fresh_name()
    ev = recorded_evaluation(checkpoints["model"], {"l1": 0.5}, "/shards/d", "d" * 16, EvaluateConfig(**FAST))
    register_version(cfg, checkpoints["plain"], ev, name=name)
    c = tracking.client(cfg)
    # why the gate reads the alias map: MLflow's by-alias lookup answers an unset alias with the code of a bad request
    with pytest.raises(MlflowException) as raised:
        c.get_model_version_by_alias(name, "champion")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE" and "not found" in raised.value.message
    assert champion.champion_version(c, name, "champion") is None
    result = run_promote(name=name, mlflow=cfg, cfg=PromoteConfig(), eval_cfg=EvaluateConfig())
    assert result.decision == "promoted" and result.reason == "no champion yet" and champion_of(cfg, name) == "1"


def test_an_unevaluated_challenger_is_refused(server, checkpoints, capsys):
    """A version registered without its evaluation (e.g. a crash before its tags were applied) is never promoted,
    not even when there is no champion yet."""
    name = fresh_name()
    register_version(server, checkpoints["plain"], None, name=name)
    capsys.readouterr()
    with pytest.raises(RegistryError, match="no evaluation fingerprint"):
        run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=EvaluateConfig())
    assert champion_of(server, name) is None
    assert tags_of(server, name, "1")["promotion.decision"] == "refused"
    code = i2i(["models", "promote", name, "1", "--set", f"mlflow.tracking_uri={server.tracking_uri}"])
    assert code == 2 and "no evaluation fingerprint" in capsys.readouterr().err and champion_of(server, name) is None


# --- one winner -------------------------------------------------------------------------------------------------
def test_two_promoters_racing_one_wins(server, checkpoints, edge_shards):  # noqa: F811
    """Two equally good challengers judged against the same champion at the same time (each re-evaluates the
    champion first, so both have judged before either moves the alias): exactly one wins."""
    name = fresh_name()
    cfg = EvaluateConfig(**FAST)
    champion_eval = recorded_evaluation(checkpoints["model"], {"l1": 5.0}, "/x", "x" * 16, EvaluateConfig(**FAST))
    register_version(server, checkpoints["black"], champion_eval, name=name)
    run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=cfg, version="1")
    challenger_eval = evaluate_model(checkpoints["model"], edge_shards, cfg)
    for _ in range(2):
        register_version(server, checkpoints["plain"], challenger_eval, name=name)
    start, results, errors = threading.Barrier(2), {}, []

    def promoter(version: str):
        start.wait()
        try:
            results[version] = run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=cfg,
                                           version=version)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=promoter, args=(v,)) for v in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert all(r.reevaluated == ["1"] for r in results.values())  # both judged against champion v1
    winners = [v for v, r in results.items() if r.decision == "promoted"]
    assert len(winners) == 1
    (winner,), (loser,) = winners, set(results) - set(winners)
    assert champion_of(server, name) == winner
    assert results[loser].decision == "kept" and results[loser].champion_version == winner
    assert results[loser].reason.startswith(f"lost a race: the champion changed from v1 to v{winner}")
    assert tags_of(server, name, loser)["promotion.decision"] == "kept"
    entries = champion_history(server, name).entries
    assert [(e["version"], e["previous"], e["kind"]) for e in entries] == [("1", None, "promoted"),
                                                                        (winner, "1", "promoted")]
    # the lease is gone: it is not a registered model any more
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="not found"):
        tracking.client(server).get_registered_model(champion.lease_name(name))


def test_champion_history_stays_within_the_tag_limit_and_loses_nothing(server, checkpoints):
    """MLflow stores registered-model tag values in VARCHAR(5000) (PostgreSQL/MySQL refuse more; sqlite does not
    check): the history moves full lists to archive tags and the reader puts them back together."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModelTag

    assert SqlRegisteredModelTag.__table__.c.value.type.length == champion.TAG_LIMIT  # the limit this relies on
    name = fresh_name()
    ev = recorded_evaluation(checkpoints["model"], {"l1": 0.5}, "/shards/d", "d" * 16, EvaluateConfig(**FAST))
    register_version(server, checkpoints["plain"], ev, name=name)
    c = tracking.client(server)
    earlier, compact = [], dict(separators=(",", ":"))  # a long past: as many entries as the head tag holds
    while len(json.dumps(earlier + [champion.history_entry("0", None, "x" * 250, "forced")], **compact)) < 5000:
        earlier.append(champion.history_entry(str(len(earlier)), None, "x" * 250, "forced"))
    c.set_registered_model_tag(name, champion.HISTORY_TAG, json.dumps(earlier, **compact))
    run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=EvaluateConfig(), version="1")
    better = recorded_evaluation(checkpoints["model"], {"l1": 0.1}, "/shards/d", "d" * 16, EvaluateConfig(**FAST))
    register_version(server, checkpoints["plain"], better, name=name)
    assert run_promote(name=name, mlflow=server, cfg=PromoteConfig(), eval_cfg=EvaluateConfig(), version="2"
                       ).decision == "promoted"
    tags = c.get_registered_model(name).tags
    history_tags = {k: v for k, v in tags.items() if k.startswith(champion.HISTORY_TAG)}
    assert len(history_tags) >= 2 and all(len(v) <= champion.TAG_LIMIT for v in history_tags.values())
    entries = champion_history(server, name).entries
    n = len(earlier)
    assert entries[:n] == earlier and [(e["version"], e["previous"]) for e in entries[n:]] == [("1", None), ("2", "1")]

"""Evaluation per data mode on real shards of the demo datasets (local Ray cluster, tiny untrained models)."""

import math
import os
from dataclasses import dataclass

import pytest
import torch

from i2i_models.base import I2IModel
from i2i_models.registry import get_model
from pipelines.errors import ConfigError
from pipelines.evaluate import GROUND_TRUTH, EvaluateConfig, evaluate_model, lower_is_better
from pipelines.schema import validate
from pipelines.shard import ShardConfig, run_shard
from tests.i2i_models.test_contract import TINY

FAST = dict(feature_net="tiny", lpips_backbone="tiny", num_styles=2, batch_size=8, kid_subset_size=50)


@pytest.fixture(scope="module")
def winter_shards(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("photo2winter"))
    run_shard(ShardConfig(source=f"{demo_root}/photo2winter", output=out, load_size=32, num_shards=1))
    return out


@pytest.fixture(scope="module")
def styles_shards(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("styles"))
    run_shard(ShardConfig(source=f"{demo_root}/styles", output=out, load_size=32, num_shards=1))
    return out


@pytest.fixture(scope="module")
def edge_shards(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("edges2photo"))
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=32, num_shards=1))
    return out


@dataclass(frozen=True)
class OracleConfig:
    image_size: int = 32


class WinterOracle(I2IModel):
    """A 'model' whose a→b is the demo's known winter transform (b→a: identity); not registered."""

    name, data_mode, loss_terms, inference_nets, Config = "winter_oracle", "unpaired", (), (), OracleConfig

    def translate(self, x, *, direction="a2b"):
        return GROUND_TRUTH["demo_winter"](x) if direction == "a2b" else x


class BlackModel(WinterOracle):
    """A 'model' whose a→b output is black (b→a: identity)."""

    def translate(self, x, *, direction="a2b"):
        return -torch.ones_like(x) if direction == "a2b" else x


@dataclass(frozen=True)
class PidConfig:
    image_size: int = 32
    pid_dir: str = ""


class PidOracle(WinterOracle):
    """The winter oracle, leaving a file named after the process id wherever it translates."""

    Config = PidConfig

    def translate(self, x, *, direction="a2b"):
        open(os.path.join(self.config.pid_dir, str(os.getpid())), "w").close()
        return super().translate(x, direction=direction)


def finite(result) -> bool:
    return all(math.isfinite(v) for v in result.metrics.values())


def test_paired_as_before(edge_shards):
    r = evaluate_model(get_model("pix2pix", **TINY["pix2pix"]), edge_shards, EvaluateConfig(**FAST))
    assert set(r.metrics) == {"l1", "psnr", "ssim", "fid", "kid"} and finite(r) and r.samples == 6


def test_an_evaluation_worker_logs_its_progress(edge_shards, capfd):
    """Each evaluation worker (a Ray task, whose stdout Ray copies to the job's log) counts its share of the split."""
    from pipelines.data import read_split
    from pipelines.evaluate import _Tools

    cfg = EvaluateConfig(**{**FAST, "fid": False, "batch_size": 2})
    tools = _Tools(get_model("pix2pix", **TINY["pix2pix"]), cfg, part=0, parts=2)
    n = sum(b["input"].shape[0] for b in tools.batches(read_split(edge_shards, "val"), 0))
    assert n == 4  # batches 0 and 2 of the 6 val images
    assert "evaluate (worker 1/2): 4/4 images (100%)" in capfd.readouterr().out


def test_unpaired_with_ground_truth(winter_shards):
    cfg = EvaluateConfig(**FAST, ground_truth="demo_winter")
    oracle = evaluate_model(WinterOracle(OracleConfig()), winter_shards, cfg)
    assert oracle.split == "test" and oracle.samples == 3
    assert oracle.metrics["l1"] == 0 and oracle.metrics["ssim"] == pytest.approx(1.0) and oracle.metrics["psnr"] > 60
    model = get_model("cyclegan", **TINY["cyclegan"]).eval()
    r = evaluate_model(model, winter_shards, cfg)
    assert set(r.metrics) == {"fid", "kid", "fid_ba", "kid_ba", "l1", "psnr", "ssim"} and finite(r)
    assert r.metrics["l1"] > 0.05 and r.metrics["psnr"] < oracle.metrics["psnr"]  # untrained: far from winter(A)
    black = evaluate_model(BlackModel(OracleConfig()), winter_shards, cfg)
    assert black.metrics["fid"] > oracle.metrics["fid"]  # winter(A) looks like the real B tiles; black does not
    no_truth = evaluate_model(model, winter_shards, EvaluateConfig(**FAST))
    assert set(no_truth.metrics) == {"fid", "kid", "fid_ba", "kid_ba"}
    assert no_truth.metrics["fid"] == r.metrics["fid"]  # deterministic


def test_multimodal_unpaired_diversity_and_conditional_is(winter_shards, tmp_path):
    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    torch.jit.script(clf).save(str(tmp_path / "domain_clf.pt"))
    model = get_model("munit", **TINY["munit"]).eval()
    cfg = EvaluateConfig(**{**FAST, "num_styles": 3}, domain_classifier=str(tmp_path / "domain_clf.pt"))
    r = evaluate_model(model, winter_shards, cfg)
    assert set(r.metrics) == {"fid", "kid", "fid_ba", "kid_ba", "lpips_diversity", "cis", "is"} and finite(r)
    assert r.metrics["lpips_diversity"] > 0  # different style codes → different outputs
    assert r.metrics["cis"] >= 1.0 and r.metrics["is"] >= 1.0


def test_labeled_per_target_domain(styles_shards):
    model = get_model("stargan_v2", **TINY["stargan_v2"])
    r = evaluate_model(model, styles_shards, EvaluateConfig(**FAST))
    domains = ("photo", "winter", "cartoon")
    assert set(r.metrics) == {"fid", "kid", "fid_ref", "kid_ref", "lpips_diversity", *(f"fid_{d}" for d in domains)}
    assert finite(r) and r.split == "val" and r.samples == 6
    assert r.metrics["fid"] == pytest.approx(sum(r.metrics[f"fid_{d}"] for d in domains) / 3)
    assert r.metrics["lpips_diversity"] > 0


def test_config_and_metric_directions():
    with pytest.raises(ConfigError, match="unknown ground truth 'summer'; valid: demo_winter"):
        validate(EvaluateConfig, {"ground_truth": "summer"})
    assert lower_is_better("fid_cartoon") and not lower_is_better("lpips_diversity") and not lower_is_better("cis")
    with pytest.raises(KeyError, match="valid: l1"):
        lower_is_better("accuracy")


def test_single_domain_fingerprint_and_gate_metrics():
    """A single-domain family's evaluation depends on the domain it is measured on and on the batch (samples are
    drawn per batch): both are in its fingerprint and come back from it; other families' fingerprints are what they
    were (no new key). The gate knows the reconstruction metrics' directions."""
    from pipelines.evaluate import config_from_spec, fingerprint_of, fingerprint_spec
    from pipelines.promote import PromoteConfig

    ae = get_model("ae", image_size=16, nz=8, ngf=4, ndf=4)
    spec = fingerprint_spec(EvaluateConfig(**FAST, domain="B"), "id", "test", ae)
    assert (spec["domain"], spec["batch_size"]) == ("B", 8)
    assert config_from_spec(spec, EvaluateConfig()).domain == "B"
    assert fingerprint_of(spec) != fingerprint_of(fingerprint_spec(EvaluateConfig(**FAST, domain="A"), "id", "test",
                                                                   ae))
    assert "domain" not in fingerprint_spec(EvaluateConfig(**FAST), "id", "val", get_model("pix2pix",
                                                                                           **TINY["pix2pix"]))
    assert lower_is_better("mse") and not lower_is_better("psnr")
    assert PromoteConfig(metric="mse").metric == "mse"


def test_workers_measure_in_ray_tasks_and_do_not_change_the_numbers(edge_shards, winter_shards, tmp_path):
    """Evaluation runs in Ray tasks (the driver only merges statistics): 1 or 2 workers, the same numbers (batches
    go to workers by index, noise is seeded per batch: pix2pix keeps dropout on at test time)."""
    pix2pix = get_model("pix2pix", **TINY["pix2pix"])
    cfg = EvaluateConfig(**{**FAST, "batch_size": 2}, cpus_per_worker=0.5)
    one = evaluate_model(pix2pix, edge_shards, cfg)
    two = evaluate_model(pix2pix, edge_shards, cfg.model_copy(update={"workers": 2}))
    assert one.samples == two.samples == 6 and one.fingerprint == two.fingerprint
    assert two.metrics == pytest.approx(one.metrics, rel=1e-6, abs=1e-9)
    oracle = evaluate_model(PidOracle(PidConfig(pid_dir=str(tmp_path))), winter_shards, EvaluateConfig(**FAST))
    assert oracle.samples == 3 and os.listdir(tmp_path) and str(os.getpid()) not in os.listdir(tmp_path)

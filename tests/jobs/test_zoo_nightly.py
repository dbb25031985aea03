"""A multimodal unpaired family (MUNIT), the labeled one (StarGAN v2) and a single-domain one (VAE) through the whole
pipeline as users run it: `ray job submit` of `jobs.nightly` with the family's demo config (shard → 2-worker
training → evaluation → registry → promotion), then `i2i translate` (Ray Data replicas, each a fresh process that
loads `@champion` from the registry) with the family's conditions, or `--sample`."""

import io
import json
import os
import re
import uuid

import mlflow
import numpy as np
import pytest
from PIL import Image

from jobs import translate as translate_job
from tests.conftest import submit

TINY = {
    "munit": "{image_size: 32, dim: 8, n_res: 2, mlp_dim: 16, style_dim: 4, dis_dim: 8, dis_n_layer: 3, "
             "dis_num_scales: 2}",
    "stargan_v2": "{image_size: 32, num_domains: 3, base_dim: 8, max_conv_dim: 16, style_dim: 8, latent_dim: 4, "
                  "mapping_dim: 16, ds_iter: 100}",
}
SOURCE = {"munit": "photo2winter", "stargan_v2": "styles"}
CONDITIONS = {"munit": [["--seed", "3", "--num-styles", "2"], ["--reference", "REF", "--direction", "a2b"]],
              "stargan_v2": [["--domain", "2", "--seed", "1", "--num-styles", "2"], ["--domain", "1", "--reference", "REF"]]}


def nightly(ray_head, config: str, sets: dict) -> tuple[dict, str]:
    """`ray job submit` of `jobs.nightly` with ``config`` and ``--set`` overrides: (its JSON summary, its log)."""
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    r = submit(ray_head, "python", "-m", "jobs.nightly", "--config", config, *args)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return json.loads(r.stdout[r.stdout.index('{\n "status"'): r.stdout.rindex("}") + 1]), r.stdout


@pytest.mark.parametrize("family", list(TINY))
def test_nightly_registers_and_champion_translates_with_conditions(family, ray_head, ray_cluster, mlflow_server,
                                                                   demo_root, tmp_path, capsys):
    shards = str(tmp_path / "shards")
    name = f"i2i-{family}-{uuid.uuid4().hex[:8]}"  # its own registered model and experiment: no other test's champion
    sets = {"shard.source": f"{demo_root}/{SOURCE[family]}", "shard.output": shards, "shard.load_size": 32,
            "shard.num_shards": 2, "model.args": TINY[family], "train.dataset": shards, "train.crop_size": 32,
            "train.epochs": 1, "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "evaluate.batch_size": 8, "evaluate.num_styles": 2, "registry.name": name,
            "mlflow.experiment": f"zoo-nightly-{name}"}
    summary, _ = nightly(ray_head, f"jobs/configs/{family}_demo.yaml", sets)
    version = summary["register"]["version"]
    assert summary["register"]["name"] == name and summary["promote"]["decision"] == "promoted"
    got = summary["evaluate"]["metrics"]
    assert {"fid", "kid", "lpips_diversity"} <= set(got) and got["lpips_diversity"] > 0
    if family == "munit":  # the demo's winter domain is a known transform of A: ground-truth L1/PSNR too
        assert {"l1", "psnr", "ssim", "fid_ba"} <= set(got)
    else:
        assert {"fid_photo", "fid_winter", "fid_cartoon", "fid_ref"} <= set(got)
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    # the registry holds what was measured: the version carries every metric the evaluate step reported, it was
    # trained by the run the train step reported, and the champion alias points at it
    registered = client.get_model_version(name, version)
    assert {k: float(registered.tags[f"eval.{k}"]) for k in got} == got
    assert registered.run_id == summary["train"]["mlflow_run_id"]
    assert client.get_model_version_by_alias(name, "champion").version == version

    # a fresh process serves @champion with the family's conditions
    src = tmp_path / "in"
    src.mkdir()
    folder = f"{demo_root}/{SOURCE[family]}/" + ("testA" if family == "munit" else "val/photo")
    for f in sorted(os.listdir(folder))[:2]:
        Image.open(os.path.join(folder, f)).save(src / f)
    ref = os.path.join(f"{demo_root}/{SOURCE[family]}/" + ("testB" if family == "munit" else "val/winter"),
                       sorted(os.listdir(f"{demo_root}/{SOURCE[family]}/"
                                         + ("testB" if family == "munit" else "val/winter")))[0])
    outputs = []
    for i, condition in enumerate(CONDITIONS[family]):
        out = tmp_path / f"out{i}"
        args = ["--set", f"mlflow.tracking_uri={mlflow_server}", "--model", f"models:/{name}@champion",
                *[ref if c == "REF" else c for c in condition], str(src), str(out)]
        assert translate_job.main(args) == 0, capsys.readouterr().err[-3000:]
        assert json.loads(capsys.readouterr().out)["model_version"].startswith(f"models:/{name}/")
        outputs.append(sorted(f for f in os.listdir(out) if f.endswith(".png")))
        if "--num-styles" in condition:  # two styles of one input differ
            first = sorted(out.glob("*.png"))[:2]
            a, b = (np.asarray(Image.open(x), dtype=np.int16) for x in first)
            assert a.shape == (32, 32, 3) and np.abs(a - b).max() > 0
    assert len(outputs[0]) == 4 and len(outputs[1]) == 2


def test_single_domain_family_nightly_to_champion_then_samples(ray_head, ray_cluster, mlflow_server, demo_root,
                                                               tmp_path, capsys):
    """A single-domain family (VAE) through `ray job submit` of `jobs.nightly` with the basics demo config: one
    domain (A) of the demo photo→winter set, 2 Ray Train workers whose validation KID (samples vs held-out images)
    and reconstruction MSE are the final checkpoint's, recomputed here from the shards; evaluation of FID/KID of as
    many samples as real images and of the reconstructions; registry; promotion on fid. Then `i2i translate
    --sample` from `@champion`: the files are the registered model's samples of their seeds."""
    import shutil

    import torch

    from i2i_models.base import I2IModel
    from pipelines.metrics import TinyFeatures
    from pipelines.register import load_model
    from pipelines.tracking import MlflowConfig
    from pipelines.translate import _png
    from tests.conftest import kid_all_samples, shard_domain_images

    src = tmp_path / "photo2winter"
    shutil.copytree(f"{demo_root}/photo2winter", src)
    for extra in sorted((src / "testA").iterdir())[2:]:  # 2 held-out A images: one per rank, none dropped
        extra.unlink()
    shards = str(tmp_path / "shards")
    name = f"i2i-vae-{uuid.uuid4().hex[:8]}"
    sets = {"model.name": "vae", "shard.source": str(src), "shard.output": shards, "shard.load_size": 16,
            "shard.num_shards": 2, "model.args": "{image_size: 16, nz: 8, ngf: 4, ndf: 4}", "train.dataset": shards,
            "train.crop_size": 16, "train.epochs": 1, "train.global_batch_size": 4,
            "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "evaluate.batch_size": 8, "registry.name": name, "mlflow.experiment": f"zoo-nightly-{name}"}
    summary, log = nightly(ray_head, "jobs/configs/basics_demo.yaml", sets)
    version = summary["register"]["version"]
    assert summary["promote"]["decision"] == "promoted"
    # the job's log: the epoch's line once (not doubled by Ray Train's print patch), in the run's totals
    steps = summary["train"]["metrics"]["step"]
    assert len(re.findall(rf"\[i2i\] epoch 1/1 step {steps}/{steps} \(100%\) — epoch done", log)) == 1
    # training: each rank validated one held-out A image against one sample of seed (run seed · 1000003 + rank ·
    # 10007 + batch index); the ranks' statistics combined give the KID of both against both
    trained, m = I2IModel.from_pretrained(summary["train"]["checkpoint"]), summary["train"]["metrics"]
    real = shard_domain_images(shards, "test", "A")
    fake = torch.cat([trained.sample(1, seed=rank * 10_007) for rank in (0, 1)])
    assert m["val_kid"] == pytest.approx(kid_all_samples(real, fake, TinyFeatures()), rel=1e-3, abs=1e-6)
    mse = float((trained.translate(real) - real).pow(2).mean())
    assert m["val_mse"] == pytest.approx(mse, rel=1e-4) and {"loss_kl", "loss_recon", "val_psnr"} <= set(m)
    # evaluation: as many samples as real images, the reconstructions of those images, on domain A
    got = summary["evaluate"]["metrics"]
    assert {"fid", "kid", "mse", "psnr"} <= set(got) and got["mse"] == pytest.approx(mse, rel=1e-4)
    assert summary["evaluate"]["samples"] == 2 and summary["evaluate"]["fingerprint_spec"]["domain"] == "A"
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert {k: float(client.get_model_version(name, version).tags[f"eval.{k}"]) for k in got} == got
    assert client.get_model_version_by_alias(name, "champion").version == version

    out = tmp_path / "samples"
    args = ["--set", f"mlflow.tracking_uri={mlflow_server}", "--model", f"models:/{name}@champion", "--sample", "3",
            "--seed", "5", str(out)]
    assert translate_job.main(args) == 0, capsys.readouterr().err[-3000:]
    result = json.loads(capsys.readouterr().out)
    assert result["model_version"] == f"models:/{name}/{version}" and result["written"] == 3
    assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == ["seed_5.png", "seed_6.png", "seed_7.png"]
    served = load_model(f"models:/{name}/{version}", MlflowConfig(tracking_uri=mlflow_server))
    for s in (5, 6, 7):
        assert (out / f"seed_{s}.png").read_bytes() == _png(served.sample(1, seed=s)[0])


def test_dtn_nightly_with_f_from_a_file_then_champion_serves_without_it(ray_head, ray_cluster, mlflow_server,
                                                                        demo_root, tmp_path, capsys):
    """DTN through `ray job submit` of `jobs.nightly` with its demo config, f a TorchScript file the driver ships to
    the workers through storage; evaluation is a→b only (a one-way family: no *_ba metrics); registered,
    promoted; then the f file is deleted and `i2i translate` serves `@champion` (f travels inside the model), and a
    b2a request is refused with DTN's one-line reason."""
    import torch

    from i2i_models.dtn import DigitF, quiet_jit
    from pipelines.register import load_model
    from pipelines.tracking import MlflowConfig

    f_file = tmp_path / "f.pt"
    with quiet_jit():
        torch.jit.save(torch.jit.script(DigitF(3, nef=4, f_dim=8, image_size=16).eval()), str(f_file))
    shards = str(tmp_path / "shards")
    name = f"i2i-dtn-{uuid.uuid4().hex[:8]}"
    sets = {"shard.source": f"{demo_root}/photo2winter", "shard.output": shards, "shard.load_size": 16,
            "shard.num_shards": 2, "model.args": f"{{image_size: 16, in_channels: 3, out_channels: 3, ngf: 4, "
                                                  f"ndf: 4, iterations: 4, f_source: {f_file}}}",
            "train.dataset": shards, "train.crop_size": 16, "train.global_batch_size": 4,
            "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "evaluate.batch_size": 8, "registry.name": name, "mlflow.experiment": f"zoo-nightly-{name}"}
    summary, _ = nightly(ray_head, "jobs/configs/dtn_demo.yaml", sets)
    assert summary["promote"]["decision"] == "promoted" and summary["train"]["metrics"]["step"] == 4
    got = summary["evaluate"]["metrics"]
    assert {"fid", "kid", "l1", "psnr"} <= set(got) and not any(k.endswith("_ba") for k in got)
    assert {"loss_gan", "loss_const", "loss_tid", "loss_tv", "loss_d_real_t"} <= set(summary["train"]["metrics"])
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    version = summary["register"]["version"]
    assert client.get_model_version_by_alias(name, "champion").version == version
    run = client.get_run(summary["train"]["mlflow_run_id"])
    assert run.data.tags["i2i.f_source"].startswith(f"{f_file} sha256:")  # where f came from, pinned by content

    with quiet_jit():
        f_weights = torch.jit.load(str(f_file)).state_dict()
    f_file.unlink()  # the registered DTN carries f: serving never needs the original file
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(os.listdir(f"{demo_root}/photo2winter/testA"))[:2]:
        Image.open(f"{demo_root}/photo2winter/testA/{f}").save(src / f)
    base = ["--set", f"mlflow.tracking_uri={mlflow_server}", "--model", f"models:/{name}@champion"]
    assert translate_job.main([*base, str(src), str(tmp_path / "out")]) == 0, capsys.readouterr().err[-3000:]
    assert json.loads(capsys.readouterr().out)["written"] == 2
    served = load_model(f"models:/{name}/{version}", MlflowConfig(tracking_uri=mlflow_server))
    served_f = served.nets["f"].net.state_dict()  # the file's f, unchanged by training (BN statistics included)
    assert set(served_f) == set(f_weights) and all(torch.equal(served_f[k], v) for k, v in f_weights.items())
    assert translate_job.main([*base, "--direction", "b2a", str(src), str(tmp_path / "out_ba")]) == 2
    assert "DTN translates one way" in capsys.readouterr().err


def test_cogan_nightly_to_champion_then_translates_by_latent_search(ray_head, ray_cluster, mlflow_server, demo_root,
                                                                     tmp_path, capsys):
    """CoGAN through `ray job submit` of `jobs.nightly` with its demo config (2 Ray Train workers, the coupled nets
    in one DDP wrapper each, validation by latent search under no_grad), registered and promoted on kid; then `i2i
    translate --steps N --seed S` from `@champion` in Ray Data replicas: each file is the registered model's
    G_b(z*) of its input for those steps and that seed (not the search's start: `--steps` reaches the replicas), an
    out-of-range `--steps` is refused on the driver, and the MLflow pyfunc serves the default steps."""
    import mlflow.pyfunc
    import torch

    from pipelines.register import load_model
    from pipelines.tracking import MlflowConfig
    from pipelines.translate import _png, _to_input

    shards = str(tmp_path / "shards")
    name = f"i2i-cogan-{uuid.uuid4().hex[:8]}"
    sets = {"shard.source": f"{demo_root}/photo2winter", "shard.output": shards, "shard.load_size": 16,
            "shard.num_shards": 2, "model.args": "{arch: conv64, image_size: 16, in_channels: 3, nz: 8, ngf: 4, "
                                                 "ndf: 4, n_iters: 4, translate_steps: 2, translate_lr: 5.0}",
            "train.dataset": shards, "train.crop_size": 16, "train.global_batch_size": 4,
            "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "evaluate.batch_size": 8, "registry.name": name, "mlflow.experiment": f"zoo-nightly-{name}"}
    summary, _ = nightly(ray_head, "jobs/configs/cogan_demo.yaml", sets)
    assert summary["promote"]["decision"] == "promoted" and summary["train"]["metrics"]["step"] == 4
    assert {"loss_gan", "loss_d_real", "loss_d_fake", "val_kid"} <= set(summary["train"]["metrics"])
    assert {"fid", "kid", "l1", "fid_ba"} <= set(summary["evaluate"]["metrics"])
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    version = summary["register"]["version"]
    assert client.get_model_version_by_alias(name, "champion").version == version

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(os.listdir(f"{demo_root}/photo2winter/testA"))[:2]:
        Image.open(f"{demo_root}/photo2winter/testA/{f}").save(src / f)
    served = load_model(f"models:/{name}/{version}", MlflowConfig(tracking_uri=mlflow_server))
    base = ["--set", f"mlflow.tracking_uri={mlflow_server}", "--model", f"models:/{name}@champion", "--seed", "2"]
    out = tmp_path / "out"
    assert translate_job.main([*base, "--steps", "20", str(src), str(out)]) == 0, capsys.readouterr().err[-3000:]
    assert json.loads(capsys.readouterr().out)["written"] == 2

    def local(x, steps):  # the registered model's G_b(z*) of x, as a PNG's pixels
        return np.asarray(Image.open(io.BytesIO(_png(served.translate(x, steps=steps, seed=2)[0]))), np.int16)

    moved = []
    for f in sorted(os.listdir(src)):  # the replica's file = G_b(z*) for 20 steps from seed 2 (translate_lr 5: a few
        x = _to_input(Image.open(src / f).convert("RGB"), 16)[None]  # steps move this tiny G by whole pixel levels)
        got = np.asarray(Image.open(out / f"{os.path.splitext(f)[0]}.png"), dtype=np.int16)
        assert np.abs(got - local(x, 20)).max() <= 1  # ±1: float rounding across processes' thread counts
        moved.append(np.abs(got - local(x, 0)).max() > 1)
    assert any(moved)  # --steps reached the replicas: not the start's image
    assert translate_job.main([*base, "--steps", "-1", str(src), str(tmp_path / "bad")]) == 2
    assert "steps must be in [0, " in capsys.readouterr().err

    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # the served path: default steps, under no_grad
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 16)).astype("float32")
    np.testing.assert_allclose(pyfunc.predict(x), served.translate(torch.from_numpy(x)).numpy(), atol=1e-5)
    np.testing.assert_allclose(pyfunc.predict(x, params={"steps": 2}),  # and takes the steps as a param
                               served.translate(torch.from_numpy(x), steps=2).numpy(), atol=1e-5)


def test_triangle_gan_semi_paired_nightly_to_champion_translates_both_ways(ray_head, ray_cluster, mlflow_server,
                                                                          demo_root, tmp_path, capsys):
    """Triangle GAN through `ray job submit` of `jobs.nightly` with its demo config (tiny nets): the demo facades
    sharded as pairs, 2 Ray Train workers on semi-paired batches (30% pairs), paired evaluation (L1/PSNR/SSIM/FID of
    a→b on the val pairs), registry, promotion on l1; then `i2i translate` from `@champion` a→b (a folder of label
    maps) and b→a (the sharded pairs: their targets), each file being the registered G_ab's / G_ba's output, and the
    MLflow pyfunc serving b→a by its `direction` param."""
    import mlflow.pyfunc
    import torch

    from pipelines.data import read_split
    from pipelines.register import load_model
    from pipelines.tracking import MlflowConfig
    from pipelines.translate import _to_input

    shards = str(tmp_path / "shards")
    name = f"i2i-triangle_gan-{uuid.uuid4().hex[:8]}"
    sets = {"shard.source": f"{demo_root}/facades", "shard.output": shards, "shard.load_size": 16,
            "shard.num_shards": 2, "model.args": "{arch: photo, image_size: 16, in_channels: 3, out_channels: 3, "
            "ngf: 4, ndf: 4, n_blocks: 1, n_layers_D: 2, paired_fraction: 0.3, d_steps: 1}",
            "train.dataset": shards, "train.crop_size": 16, "train.epochs": 1, "train.global_batch_size": 4,
            "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "evaluate.batch_size": 8, "registry.name": name, "mlflow.experiment": f"zoo-nightly-{name}"}
    summary, _ = nightly(ray_head, "jobs/configs/triangle_gan_demo.yaml", sets)
    version = summary["register"]["version"]
    assert summary["promote"]["decision"] == "promoted"
    m = summary["train"]["metrics"]  # every term trained, D1's real term on real pairs; validated as pairs
    assert all(m[f"loss_{k}"] > 0 for k in ("d1_real", "d1_fake_ab", "d2_ab", "gan1_ab", "gan2_ba")) and "val_l1" in m
    got = summary["evaluate"]["metrics"]
    assert {"l1", "psnr", "ssim", "fid"} <= set(got)
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert {k: float(client.get_model_version(name, version).tags[f"eval.{k}"]) for k in got} == got
    assert client.get_model_version_by_alias(name, "champion").version == version

    def png(t):  # a translation as the PNG's pixels
        return ((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy().astype(np.int16)

    served = load_model(f"models:/{name}/{version}", MlflowConfig(tracking_uri=mlflow_server))
    base = ["--set", f"mlflow.tracking_uri={mlflow_server}", "--model", f"models:/{name}@champion"]
    labels = tmp_path / "label"  # a2b from a folder of label maps (the A halves)
    labels.mkdir()
    for f in sorted(os.listdir(f"{demo_root}/facades/val"))[:2]:
        im = Image.open(f"{demo_root}/facades/val/{f}").convert("RGB")
        im.crop((0, 0, im.width // 2, im.height)).save(labels / f)
    assert translate_job.main([*base, "--direction", "a2b", str(labels), str(tmp_path / "out_ab")]) == 0, \
        capsys.readouterr().err[-3000:]
    assert json.loads(capsys.readouterr().out)["written"] == 2
    for f in sorted(os.listdir(labels)):
        want = png(served.translate(_to_input(Image.open(labels / f).convert("RGB"), 16)[None])[0])
        written = np.asarray(Image.open(tmp_path / "out_ab" / f"{os.path.splitext(f)[0]}.png"), dtype=np.int16)
        assert np.abs(written - want).max() <= 1, f  # ±1: float rounding across thread counts
    # b2a from the sharded pairs: G_ba reads each pair's target (the facade), not its input
    assert translate_job.main([*base, "--direction", "b2a", shards, str(tmp_path / "out_ba")]) == 0, \
        capsys.readouterr().err[-3000:]
    rows = read_split(shards, "val", with_keys=True).dataset.take_all()
    assert json.loads(capsys.readouterr().out)["written"] == len(rows)
    for row in rows[:2]:
        want = png(served.translate(_to_input(Image.fromarray(row["target"]), 16)[None], direction="b2a")[0])
        written = np.asarray(Image.open(tmp_path / "out_ba" / f"{row['key']}.png"), dtype=np.int16)
        assert np.abs(written - want).max() <= 1, row["key"]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}@champion")  # the served pyfunc takes the direction too
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 16)).astype("float32")
    np.testing.assert_allclose(pyfunc.predict(x, params={"direction": "b2a"}),
                               served.translate(torch.from_numpy(x), direction="b2a").numpy(), atol=1e-5)

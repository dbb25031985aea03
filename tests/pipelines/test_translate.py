"""Batch inference on Ray Data (the session's local cluster): folders on S3 or disk and sharded datasets in,
PNGs out, with conditions; bad files skipped and listed; bad conditions refused before any work is scheduled."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from i2i_models.registry import get_model
from jobs import translate as translate_job
from pipelines import storage
from pipelines.data import VERIFIED_NAME
from pipelines.errors import ConditionError, DatasetError, I2IError
from pipelines.manifest import read_manifest
from pipelines.shard import ShardConfig, run_shard
from pipelines.translate import SUMMARY_FILE, TranslateConfig, run_translate
from tests.conftest import BUCKET, truncate_first_sample, upload_dir
from tests.i2i_models.test_contract import TINY


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    """Three images, one in a subfolder, a truncated PNG and a text file."""
    folder = tmp_path_factory.mktemp("in")
    (folder / "sub").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "sub/c"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "broken.png").write_bytes((folder / "a.png").read_bytes()[:60])
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


@pytest.fixture(scope="module")
def paired_shards(ray_cluster, demo_root, tmp_path_factory) -> str:
    """The demo edges→photo set as one 32 px shard per split; tests that corrupt it work on a copy."""
    out = str(tmp_path_factory.mktemp("paired"))
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=32, num_shards=1))
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    def save(name: str, **args) -> str:
        folder = str(tmp_path_factory.mktemp(name))
        get_model(name, **{**TINY[name], **args}).save_pretrained(folder)
        return folder

    return save


def pixels(uri: str) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(storage.read_bytes(uri))), dtype=np.int16)


def test_cli_s3_folder_to_s3_with_styles_and_a_broken_file(ray_cluster, checkpoint, images, capsys):
    ckpt = checkpoint("munit")
    upload_dir(images, BUCKET, "translate/in")
    out = f"s3://{BUCKET}/translate/out"
    args = ["--model", ckpt, "--seed", "5", "--num-styles", "2", "--size", "32", "--set", "translate.batch_size=2",
            f"s3://{BUCKET}/translate/in", out]
    assert translate_job.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["inputs"], summary["written"]) == (4, 6)  # 3 images × 2 styles; the text file is not an input
    assert summary["skipped"] == [["broken.png", "unreadable or truncated image: image file is truncated"]]
    assert summary["ignored"] == 1  # notes.txt
    listed = sorted(f.relpath for f in storage.list_files(out))
    assert listed == [SUMMARY_FILE, "a_s0.png", "a_s1.png", "b_s0.png", "b_s1.png", "sub/c_s0.png", "sub/c_s1.png"]
    assert json.loads(storage.read_bytes(f"{out}/{SUMMARY_FILE}"))["written"] == 6
    s0, s1 = pixels(f"{out}/a_s0.png"), pixels(f"{out}/a_s1.png")
    assert s0.shape == (32, 32, 3) and np.abs(s0 - s1).max() > 0  # two styles, two outputs
    # other batching, local output: the same pictures (style k = seed + k for every input)
    again = run_translate(ckpt, images, f"{images}-again", condition={"seed": 5}, num_styles=2, size=32,
                          cfg=TranslateConfig(batch_size=3))
    assert again.written == 6
    assert np.array_equal(pixels(f"{images}-again/sub/c_s1.png"), pixels(f"{out}/sub/c_s1.png"))
    ref = run_translate(ckpt, images, f"{images}-ref", size=32,
                        condition={"reference": os.path.join(images, "b.png"), "direction": "b2a"})
    assert ref.written == 3 and sorted(os.listdir(f"{images}-ref")) == [SUMMARY_FILE, "a.png", "b.png", "sub"]


def test_bad_conditions_fail_on_the_driver_with_one_line(checkpoint, images, tmp_path, capsys):
    """No Ray needed: the model is checked before any work is scheduled."""
    munit, cyclegan, stargan = checkpoint("munit"), checkpoint("cyclegan"), checkpoint("stargan_v2")
    with pytest.raises(ConditionError, match="give at most one of seed, reference, style"):
        run_translate(munit, images, str(tmp_path / "x"), size=32,
                      condition={"seed": 1, "reference": os.path.join(images, "b.png")})
    with pytest.raises(ConditionError, match="domain"):
        run_translate(stargan, images, str(tmp_path / "x"))  # the target domain is required
    with pytest.raises(ConditionError, match=r"domain must be in \[0, 3\)"):
        run_translate(stargan, images, str(tmp_path / "x"), condition={"domain": 7})
    with pytest.raises(ConditionError, match="reference image"):
        run_translate(munit, images, str(tmp_path / "x"), condition={"reference": os.path.join(images, "broken.png")})
    assert translate_job.main(["--model", cyclegan, "--seed", "1", images, str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed" in err and "cyclegan" in err
    assert translate_job.main(["--model", cyclegan, "--num-styles", "2", images, str(tmp_path / "x")]) == 2
    assert "not multimodal" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def test_stargan_v2_target_domain_and_replicas_that_fit(ray_cluster, checkpoint, images, tmp_path, caplog):
    ckpt = checkpoint("stargan_v2")
    caplog.set_level("INFO", logger="pipelines.translate")
    r = run_translate(ckpt, images, str(tmp_path / "d1"), condition={"domain": 1, "seed": 0})
    assert r.written == 3 and pixels(str(tmp_path / "d1" / "a.png")).shape == (32, 32, 3)
    assert "translate: 4/4 images (100%)" in caplog.text  # progress as results stream in (the broken one too)
    # 2 replicas × 1 CPU would hold both CPUs and starve the reads that feed them (a hang): one runs, with a warning
    run_translate(ckpt, images, str(tmp_path / "d2"), condition={"domain": 2, "seed": 0},
                  cfg=TranslateConfig(concurrency=2))
    assert "translate.concurrency=2 replicas × 1 CPU do not fit" in caplog.text
    assert np.abs(pixels(str(tmp_path / "d1" / "a.png")) - pixels(str(tmp_path / "d2" / "a.png"))).max() > 0
    with pytest.raises(I2IError, match="one translate replica needs 2 CPU.*the cluster has 2 CPU"):
        run_translate(ckpt, images, str(tmp_path / "x"), condition={"domain": 1},
                      cfg=TranslateConfig(cpus_per_worker=2))


def test_sharded_datasets_in(ray_cluster, checkpoint, demo_root, paired_shards, tmp_path):
    """A shard folder as input: the split's domain-B images for b2a, named by their sample keys; a paired split's
    inputs, where a sample that does not decode is skipped and listed."""
    shards = str(tmp_path / "shards")
    run_shard(ShardConfig(source=f"{demo_root}/photo2winter", output=shards, load_size=32, num_shards=2))
    m = read_manifest(shards)
    r = run_translate(checkpoint("cyclegan"), shards, str(tmp_path / "out"), condition={"direction": "b2a"},
                      cfg=TranslateConfig(batch_size=4))  # CycleGAN layout: the test split
    assert r.inputs == r.written == m.splits["test"].domains["B"] and not r.skipped
    assert len([f for f in os.listdir(tmp_path / "out") if f.endswith(".png")]) == r.written

    paired = str(tmp_path / "paired")
    shutil.copytree(paired_shards, paired)
    key = truncate_first_sample(paired, "val")
    pix2pix = checkpoint("pix2pix", image_size=64)  # 64 px: a U-Net deep enough for the test-time dropout
    r = run_translate(pix2pix, f"{paired}/manifest.json", str(tmp_path / "p"))
    assert r.inputs == read_manifest(paired).splits["val"].samples and r.written == r.inputs - 1
    assert [name.rsplit(":", 1)[1] for name, _ in r.skipped] == [key]
    assert not os.path.exists(tmp_path / "p" / f"{key}.png")
    run_translate(pix2pix, paired, str(tmp_path / "p2"))  # a re-run: the same pictures (seeded test-time noise)
    first = sorted(f for f in os.listdir(tmp_path / "p") if f.endswith(".png"))[0]
    assert np.array_equal(pixels(str(tmp_path / "p" / first)), pixels(str(tmp_path / "p2" / first)))

    with pytest.raises(DatasetError, match="no split 'nope'"):
        run_translate(checkpoint("cyclegan"), shards, str(tmp_path / "x"), cfg=TranslateConfig(split="nope"))
    with pytest.raises(DatasetError, match="no image files"):
        run_translate(checkpoint("cyclegan"), str(tmp_path / "out-missing"), str(tmp_path / "x"))
    (tmp_path / "clash").mkdir()
    for name in ("a.png", "a.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "clash" / name)
    with pytest.raises(DatasetError, match="a.jpg and a.png would both be written as a.png"):
        run_translate(checkpoint("cyclegan"), str(tmp_path / "clash"), str(tmp_path / "x"))


def files_under(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}


def test_crafted_shard_keys_never_escape_the_output(ray_cluster, checkpoint, paired_shards, tmp_path, capsys):
    """A val shard whose sample keys were rewritten to ``../../../ESCAPED`` and to an absolute path (the manifest
    rehashed, so the shard passes its integrity check): both samples are skipped and listed, the job exits 0 with
    the rest written, and no file appears outside the output folder."""
    from tests.pipelines.test_data import rewrite_shard

    shards = str(tmp_path / "shards")
    shutil.copytree(paired_shards, shards)
    absolute = str(tmp_path / "abs" / "ABS")
    crafted = {0: "../../../ESCAPED", 1: absolute}
    keys = rewrite_shard(shards, "val", lambda i, key, column, data: (crafted.get(i, key), data))
    out = tmp_path / "a" / "b" / "c" / "out"
    before = files_under(tmp_path)
    assert translate_job.main(["--model", checkpoint("pix2pix"), shards, str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == len(keys) and summary["written"] == len(keys) - 2
    assert sorted(summary["skipped"]) == sorted([[absolute, "unsafe output name (absolute path): not written"],
                                                 ["../../../ESCAPED", "unsafe output name (empty, '.' or '..' path "
                                                                      "part): not written"]])
    new = files_under(tmp_path) - before - {os.path.join("shards", VERIFIED_NAME)}  # the shards' verification record
    assert new == {os.path.join("a", "b", "c", "out", f"{k}.png") for k in keys[2:]} | {
        os.path.join("a", "b", "c", "out", SUMMARY_FILE)}  # nothing beside or above the output, nothing at /abs


def test_folder_inputs_stay_inside_both_folders(ray_cluster, checkpoint, images, tmp_path):
    """A local input folder's symlinks that lead out of it are not followed; an output folder's symlink that leads
    out of it is not written through; a file over translate.max_input_bytes is not read. Each is listed."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    src = tmp_path / "in"
    (src / "deep").mkdir(parents=True)
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "big.png")  # ~12 KB of noise: over the 8 KB cap below
    for path in (src / "a.png", src / "deep" / "z.png", outside / "secret.png", outside / "dir" / "y.png"):
        Image.new("RGB", (40, 40), (10, 20, 30)).save(path)
    (src / "link.png").symlink_to(outside / "secret.png")
    (src / "sub").symlink_to(outside / "dir", target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "deep").symlink_to(outside / "dir", target_is_directory=True)  # out/deep/z.png would land outside
    before = files_under(outside)
    r = run_translate(checkpoint("cyclegan"), str(src), str(out), cfg=TranslateConfig(max_input_bytes=8192))
    assert (r.inputs, r.written) == (5, 1)
    reasons = dict(r.skipped)
    assert reasons["big.png"].startswith("file too large") and reasons["big.png"].endswith("not read")
    assert reasons["link.png"] == reasons["sub/y.png"] == "symlink leading out of the input folder: not followed"
    assert reasons["deep/z.png"] == "output path leads out of the output folder (through a symlink): not written"
    assert files_under(outside) == before
    assert sorted(os.listdir(out)) == [SUMMARY_FILE, "a.png", "deep"]


def test_size_and_styles_are_bounded_and_checked_on_the_driver(checkpoint, images, tmp_path, capsys):
    """No Ray needed: a size out of range is refused before the probe allocates it; a size the family does not
    keep (pix2pix's U-Net at 48 px, CycleGAN's 30 → 32) is refused with the reason; a reference over the byte cap
    is not read."""
    pix2pix, cyclegan = checkpoint("pix2pix"), checkpoint("cyclegan")
    for size in ("0", "-3", "100000"):
        assert translate_job.main(["--model", cyclegan, "--size", size, images, str(tmp_path / "x")]) == 2
        assert "size must be in [1, 4096]" in capsys.readouterr().err
    with pytest.raises(ConditionError, match=r"pix2pix cannot translate 48×48 inputs .*image_size is 32"):
        run_translate(pix2pix, images, str(tmp_path / "x"), size=48)
    with pytest.raises(ConditionError, match=r"cyclegan turns 30×30 inputs into 32×32 outputs"):
        run_translate(cyclegan, images, str(tmp_path / "x"), size=30)
    munit = checkpoint("munit")
    assert translate_job.main(["--model", munit, "--num-styles", "1000", images, str(tmp_path / "x")]) == 2
    assert "num_styles must be in [1, 64]" in capsys.readouterr().err
    with pytest.raises(ConditionError, match=r"reference image .*b\.png: \d+ bytes > translate.max_input_bytes=100"):
        run_translate(munit, images, str(tmp_path / "x"), condition={"reference": os.path.join(images, "b.png")},
                      cfg=TranslateConfig(max_input_bytes=100))
    assert not os.path.exists(tmp_path / "x")


def test_single_domain_models_sample_or_are_refused_on_the_driver(checkpoint, images, tmp_path, capsys):
    """`--sample` takes a single-domain model and only --seed; a family that does not encode (GAN) cannot translate
    inputs. Every refusal is one line, on the driver, before any work (nothing written)."""
    gan = str(tmp_path / "gan")
    get_model("gan", image_size=16, nz=8, ngf=4, ndf=4).save_pretrained(gan)
    with pytest.raises(ConditionError, match="gan does not encode images .*--sample N"):
        run_translate(gan, images, str(tmp_path / "x"))
    assert translate_job.main(["--model", gan, images, str(tmp_path / "x")]) == 2
    assert "--sample" in capsys.readouterr().err
    for argv, message in ((["--sample", "2", images], "takes only --seed: not input"),
                          (["--sample", "2", "--direction", "b2a"], "not direction"),
                          (["--sample", "0"], r"in \[1, 1000000\]"),
                          ([], "give INPUT and OUTPUT")):
        assert translate_job.main(["--model", gan, *argv, str(tmp_path / "x")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), (argv, err)
    cyclegan = checkpoint("cyclegan")
    assert translate_job.main(["--model", cyclegan, "--sample", "2", str(tmp_path / "x")]) == 2
    assert "cannot sample" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x")


def test_a_registered_generator_serves_samples_by_seed(tmp_path):
    """A family that only generates (GAN) is registered with seeds as its pyfunc input: ``predict(seeds)`` returns
    image k = ``sample(1, seed=seeds[k])``, as `i2i translate --sample` writes them."""
    import mlflow
    import torch

    from pipelines import tracking
    from pipelines.register import run_register

    cfg = tracking.MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="gan-serving")
    gan = get_model("gan", image_size=16, nz=8, ngf=4, ndf=4)
    gan.save_pretrained(str(tmp_path / "ckpt"))
    run_id = tracking.client(cfg).create_run(tracking.experiment_id(cfg)).info.run_id
    reg = run_register(checkpoint=str(tmp_path / "ckpt"), model="gan", dataset="photos", mlflow=cfg, run_id=run_id)
    served = mlflow.pyfunc.load_model(reg.model_uri)
    got = served.predict(np.array([3, 4], dtype=np.int64))
    expected = torch.cat([gan.sample(1, seed=s) for s in (3, 4)]).numpy()
    assert got.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(got, expected, atol=1e-6)

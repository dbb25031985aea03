"""Sharding against real parts: local folders, the moto S3 server, a local Ray cluster."""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from PIL import Image

from pipelines import storage
from pipelines.errors import DatasetError, ShardIntegrityError, StorageError
from pipelines.manifest import read_manifest, verify
from pipelines.shard import ShardConfig, run_shard
from tests.conftest import BUCKET, shard_pairs, source_pairs, upload_dir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def samples_of(output: str, split: str) -> dict[str, tuple]:
    """key -> sha256 of every member, read with the plain tarfile module from the manifest's shards."""
    m = read_manifest(output)
    out: dict[str, tuple] = {}
    for uri in m.shard_uris(output, split):
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(uri))) as tar:
            for member in tar.getmembers():
                key, col = member.name.split(".", 1)
                digest = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                assert (key, col) not in {(k, c) for k, cols in out.items() for c, _ in cols}, "duplicate sample"
                out[key] = tuple(sorted(out.get(key, ()) + ((col, digest),)))
    return out


@pytest.fixture
def dirty_pairs(demo_root, tmp_path):
    """The demo edges→photo set plus every kind of bad or odd file a real download contains."""
    src = tmp_path / "edges2photo"
    shutil.copytree(f"{demo_root}/edges2photo", src)
    good = sorted((src / "train").iterdir())
    data = good[0].read_bytes()
    (src / "train" / "truncated.png").write_bytes(data[: len(data) // 3])
    (src / "train" / "fake.jpg").write_bytes(b"<html>not an image</html>")
    (src / "train" / "notes.txt").write_text("hello")
    Image.new("RGB", (50, 32)).save(src / "train" / "wrong_aspect.png")
    Image.new("L", (64, 32), 128).save(src / "train" / "gray.png")
    Image.new("RGB", (64, 32), (10, 200, 30)).convert("CMYK").save(src / "train" / "cmyk.jpg")
    Image.new("RGBA", (64, 32), (10, 200, 30, 100)).save(src / "train" / "rgba.png")
    Image.new("RGB", (400, 200)).save(src / "train" / "huge.png")
    n_good = len(good) + 3  # + gray, cmyk, rgba (converted)
    return src, n_good


def test_local_round_trip_with_bad_files(ray_cluster, dirty_pairs, tmp_path, caplog):
    src, n_good = dirty_pairs
    out = tmp_path / "shards"
    cfg = ShardConfig(source=str(src), output=str(out), load_size=32, num_shards=3, max_pixels=40_000)
    caplog.set_level("INFO", logger="pipelines.shard")
    r = run_shard(cfg)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"shard {cfg.dataset_name()}: ")]
    assert progress and progress[-1].startswith(f"shard {cfg.dataset_name()}: ")  # files done/total, no bars
    assert "(100%)" in progress[-1] and "files/s" in progress[-1]
    m = read_manifest(str(out))
    assert r.samples["train"] == n_good == m.splits["train"].samples
    assert m.data_mode == "paired" and m.columns == ["input.png", "target.png"]
    reasons = {s.path: s.reason for s in m.skipped}
    assert set(reasons) == {"train/truncated.png", "train/fake.jpg", "train/notes.txt", "train/wrong_aspect.png",
                            "train/huge.png"}
    assert reasons["train/truncated.png"].startswith("unreadable or truncated image")
    assert reasons["train/fake.jpg"].startswith("not an image")
    assert "twice as wide" in reasons["train/wrong_aspect.png"] and "too large" in reasons["train/huge.png"]
    assert r.skipped == 5 and r.skipped_by_reason["unreadable or truncated image"] == 1
    sizes = [s.samples for s in m.splits["train"].shards]
    assert len(sizes) == 3 and max(sizes) - min(sizes) <= 1 + 4  # equal plans; 4 train files were skipped
    assert m.config["shard"]["load_size"] == 32 and m.source.fingerprint and m.code_version
    assert all("." not in k for k in samples_of(str(out), "train"))
    verify(m, str(out), "train")  # sha256 and sizes as recorded
    # the stock tools read it: tar -t, webdataset, ray.data.read_webdataset
    listing = subprocess.run(["tar", "-tf", str(out / "train" / "shard-000000.tar")], capture_output=True,
                             text=True, check=True).stdout.split()
    assert len(listing) == 2 * sizes[0] and listing[0].endswith(".input.png")
    import webdataset as wds

    urls = [str(out / s.path) for s in m.splits["train"].shards]
    got = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("rgb8").to_tuple("input.png",
                                                                                                   "target.png"))
    assert len(got) == n_good and got[0][0].shape == (32, 32, 3)
    import ray

    assert ray.data.read_webdataset(urls).count() == n_good


def test_rerun_is_a_noop_and_config_change_reshards(ray_cluster, demo_root, tmp_path):
    out = str(tmp_path / "s")
    cfg = ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=32, num_shards=2)
    first = run_shard(cfg)
    mtimes = {e.relpath: e.mtime_ns for e in storage.list_files(out)}
    again = run_shard(cfg)
    assert again.up_to_date and not first.up_to_date and again.dataset_id == first.dataset_id
    assert {e.relpath: e.mtime_ns for e in storage.list_files(out)} == mtimes  # nothing rewritten
    fewer = run_shard(cfg.model_copy(update={"num_shards": 1}))
    assert not fewer.up_to_date and fewer.shards == 2  # 1 train + 1 val
    assert sorted(e.relpath for e in storage.list_files(out)) == [
        "manifest.json", "train/shard-000000.tar", "val/shard-000000.tar"]  # stale shards removed
    for split in ("train", "val"):  # resharded: still every source image once, pixel for pixel
        assert shard_pairs(out, split)[0] == source_pairs(f"{demo_root}/edges2photo/{split}", 32)


def test_killed_run_leaves_no_manifest_and_rerun_is_exact(ray_cluster, demo_root, tmp_path):
    out = tmp_path / "killed"
    args = ["--set", f"shard.source={demo_root}/edges2photo", "--set", f"shard.output={out}",
            "--set", "shard.load_size=32", "--set", "shard.num_shards=6"]
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.shard", *args], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("*/*.tar")):
        assert proc.poll() is None and time.time() < deadline, "job ended before writing a shard"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: a shard is being written
    proc.wait()
    assert not (out / "manifest.json").exists()
    assert list(out.glob("*/*.tar"))
    with pytest.raises(ShardIntegrityError, match="no manifest"):
        read_manifest(str(out))
    # an earlier run's leftovers with another shard count are there too
    (out / "train" / "shard-000041.tar").write_bytes(b"stale")
    rerun = run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=str(out), load_size=32, num_shards=6))
    assert not rerun.up_to_date
    for split in ("train", "val"):  # exactly the source's samples: none lost, none twice, none from the killed run
        pairs, keys = shard_pairs(str(out), split)
        assert pairs == source_pairs(f"{demo_root}/edges2photo/{split}", 32)
        assert rerun.samples[split] == len(keys)
    assert not (out / "train" / "shard-000041.tar").exists()


def test_s3_round_trip_unpaired(ray_cluster, demo_root):
    upload_dir(f"{demo_root}/photo2winter", BUCKET, "raw/photo2winter")
    src, out = f"s3://{BUCKET}/raw/photo2winter", f"s3://{BUCKET}/shards/photo2winter"
    r = run_shard(ShardConfig(source=src, output=out, load_size=32, samples_per_shard=40))
    m = read_manifest(out)
    assert m.data_mode == "unpaired" and m.domains == ["A", "B"] and m.columns == ["image.png", "domain.cls"]
    n_a, n_b = (len(os.listdir(f"{demo_root}/photo2winter/trainA")), len(os.listdir(f"{demo_root}/photo2winter/trainB")))
    assert r.domains["train"] == {"A": n_a, "B": n_b}
    shards = m.splits["train"].shards  # each domain in shards of its own, under train/<domain>/
    assert [s.path.rsplit("/", 1)[0] for s in shards] == ["train/A"] * -(-n_a // 40) + ["train/B"] * -(-n_b // 40)
    assert [s.domain for s in shards] == ["A"] * -(-n_a // 40) + ["B"] * -(-n_b // 40)
    assert [s.samples for s in shards if s.domain == "A"] and sum(s.samples for s in shards if s.domain == "A") == n_a
    verify(m, out, "train")
    assert run_shard(ShardConfig(source=src, output=out, load_size=32, samples_per_shard=40)).up_to_date
    samples = samples_of(out, "train")  # read back over S3 with plain tarfile: every source image, once
    assert len(samples) == n_a + n_b and all({c for c, _ in cols} == {"image.png", "domain.cls"}
                                             for cols in samples.values())


def test_labeled_domains(ray_cluster, demo_root, tmp_path):
    r = run_shard(ShardConfig(source=f"{demo_root}/styles", output=str(tmp_path / "st"), load_size=32))
    assert set(r.domains["train"]) == {"cartoon", "photo", "winter"} and all(r.domains["train"].values())


def test_corrupted_shard_is_refused(ray_cluster, demo_root, tmp_path):
    out = tmp_path / "c"
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=str(out), load_size=32, num_shards=2))
    m = read_manifest(str(out))
    shard = out / m.splits["train"].shards[1].path
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardIntegrityError, match=r"shard-000001.tar does not match the manifest"):
        verify(m, str(out), "train")
    shard.unlink()
    with pytest.raises(ShardIntegrityError, match="missing"):
        verify(m, str(out), "train")
    with pytest.raises(ShardIntegrityError, match="has no split 'test'"):
        verify(m, str(out), "test")


def test_nothing_usable_fails_clearly(ray_cluster, tmp_path):
    (tmp_path / "src" / "train").mkdir(parents=True)
    (tmp_path / "src" / "train" / "a.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"no usable images .* train/a.png: not an image"):
        run_shard(ShardConfig(source=str(tmp_path / "src"), output=str(tmp_path / "o")))
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_unreachable_endpoint_fails_before_work(s3_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    storage._s3.cache_clear()
    try:
        with pytest.raises(StorageError, match=r"cannot reach object storage .*127.0.0.1:9"):
            run_shard(ShardConfig(source=f"s3://{BUCKET}/raw", output=str(tmp_path / "o")))
    finally:
        storage._s3.cache_clear()


def test_job_cli_summary_and_config_errors(ray_cluster, demo_root, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    bad = subprocess.run([sys.executable, "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml",
                          "--set", "shard.num_shard=3"], cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown key 'shard.num_shard'" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml",
                         "--set", f"shard.source={demo_root}/styles", "--set", f"shard.output={tmp_path}/o",
                          "--set", "shard.layout=auto"],
                        cwd=REPO, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    summary = json.loads(ok.stdout)  # stdout is the JSON summary alone
    assert summary["status"] == "succeeded" and summary["samples"]["train"] > 0 and summary["shards"] >= 2
    assert {"bytes", "seconds", "skipped", "domains"} <= set(summary)


def test_versioned_dataset_gets_a_new_version_only_when_the_source_changes(ray_cluster, demo_root, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(f"{demo_root}/edges2photo", src)
    root = str(tmp_path / "versions")
    cfg = ShardConfig(source=str(src), output=root, load_size=32, num_shards=1)

    first = run_shard(cfg.model_copy(update={"version": "2026-11-23"}))
    assert (first.version, first.output, first.up_to_date) == ("2026-11-23", f"{root}/2026-11-23", False)
    assert read_manifest(first.output).version == "2026-11-23"

    # the next night, nothing changed: the result is the earlier version, and no folder is written for the date
    same = run_shard(cfg.model_copy(update={"version": "2026-11-24"}))
    assert same.up_to_date and same.version == "2026-11-23" and same.dataset_id == first.dataset_id
    assert sorted(os.listdir(root)) == ["2026-11-23"]

    # a new file arrives: a new version with it; the old version is untouched
    shutil.copy(sorted((src / "train").iterdir())[0], src / "train" / "arrived.png")
    newer = run_shard(cfg.model_copy(update={"version": "2026-11-25"}))
    assert not newer.up_to_date and newer.version == "2026-11-25" and newer.dataset_id != first.dataset_id
    assert newer.samples["train"] == first.samples["train"] + 1
    verify(read_manifest(first.output), first.output, "train")
    assert run_shard(cfg.model_copy(update={"version": "2026-11-25"})).up_to_date  # a re-run of the date: no-op

    # a version is never rewritten: other data for an existing version is refused, naming it
    with pytest.raises(DatasetError, match="version 2026-11-25 .* never rewritten"):
        run_shard(cfg.model_copy(update={"version": "2026-11-25", "load_size": 36}))
    # the root itself is not a dataset: the error lists the versions to point at
    with pytest.raises(ShardIntegrityError, match="versioned dataset .*2026-11-25"):
        read_manifest(root)

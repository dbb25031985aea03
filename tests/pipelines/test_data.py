"""Reading shards back through Ray Data into model batches."""

import numpy as np
import pytest
import torch

from pipelines import manifest as mf
from pipelines.data import read_split, to_model_batch
from pipelines.errors import ShardIntegrityError
from pipelines.shard import ShardConfig, run_shard
from tests.conftest import rehash_shards, truncate_first_sample


@pytest.fixture(scope="module")
def paired(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("paired"))
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=32, num_shards=3))
    return out


@pytest.fixture(scope="module")
def unpaired(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("unpaired"))
    run_shard(ShardConfig(source=f"{demo_root}/photo2winter", output=out, load_size=32, num_shards=3))
    return out


def keys(ds) -> list[str]:
    return [k for b in ds.iter_batches(batch_size=None, batch_format="numpy") for k in b["key"]]


def test_paired_rows_and_determinism(paired):
    m = mf.read_manifest(paired)
    a = read_split(paired, "train", seed=7, with_keys=True)
    rows = a.dataset.take_all()
    assert len(rows) == m.splits["train"].samples and rows[0]["input"].shape == (32, 32, 3)
    assert rows[0]["input"].dtype == np.uint8 and a.skipped() == []
    assert keys(read_split(paired, "train", seed=7, with_keys=True).dataset) == keys(read_split(paired, "train", seed=7, with_keys=True).dataset)
    assert keys(read_split(paired, "train", seed=7, with_keys=True).dataset) != keys(read_split(paired, "train", seed=8, with_keys=True).dataset)
    assert sorted(keys(read_split(paired, "train", with_keys=True).dataset)) == sorted(r["key"] for r in rows)


def test_model_batch_keeps_pairs_aligned_and_is_seeded(paired):
    batch = next(iter(read_split(paired, "train").dataset.iter_torch_batches(batch_size=8)))
    twin = {"input": batch["input"], "target": batch["input"].clone()}  # identical images in both columns
    g = torch.Generator().manual_seed(0)
    out = to_model_batch(twin, crop_size=24, flip=True, generator=g)
    assert out["input"].shape == (8, 3, 24, 24) and out["input"].dtype == torch.float32
    assert torch.equal(out["input"], out["target"])  # same crop and flip for input and target
    assert -1.0 <= out["input"].min() and out["input"].max() <= 1.0
    again = to_model_batch(twin, crop_size=24, flip=True, generator=torch.Generator().manual_seed(0))
    other = to_model_batch(twin, crop_size=24, flip=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again["input"], out["input"]) and not torch.equal(other["input"], out["input"])
    with pytest.raises(ValueError, match="larger than the stored images"):
        to_model_batch(twin, crop_size=64)


def test_unpaired_domains_are_separate_streams(unpaired):
    m = mf.read_manifest(unpaired)
    a_only = read_split(unpaired, "train", domain="A")  # reads the domain's own shards only
    assert a_only.dataset.input_files() and all("/train/A/" in f for f in a_only.dataset.input_files())
    a = read_split(unpaired, "train", domain="A", seed=1).dataset.take_all()
    b = read_split(unpaired, "train", domain="B", seed=2).dataset.take_all()
    assert len(a) == m.splits["train"].domains["A"] and len(b) == m.splits["train"].domains["B"]
    assert {r["domain"] for r in a} == {0} and {r["domain"] for r in b} == {1}
    with pytest.raises(ValueError, match="no domain 'C'"):
        read_split(unpaired, "train", domain="C")


def test_corrupt_sample_is_skipped_and_counted(paired, tmp_path):
    """A sample that does not decode (inside a shard whose hash matches) is skipped, not fatal."""
    import shutil

    out = tmp_path / "d"
    shutil.copytree(paired, out)
    m = mf.read_manifest(str(out))
    key = truncate_first_sample(str(out), "val", rehash=False)  # the first sample's input.png
    with pytest.raises(ShardIntegrityError):
        read_split(str(out), "val")  # the hash no longer matches: refused
    rehash_shards(str(out), "val")
    data = read_split(str(out), "val")
    rows = data.dataset.take_all()
    assert len(rows) == m.splits["val"].samples - 1
    skipped = data.skipped()
    assert len(skipped) == 1 and skipped[0][1] == key



def rewrite_shard(folder: str, split: str, edit) -> list[str]:
    """Rewrite the first shard of ``split`` with ``edit(index, key, column, data) -> (key, data)`` applied to every
    member (sample ``index``, e.g. column ``input.png``) and record the shard's new hash in the manifest: a crafted
    shard that passes the integrity check. The original sample keys."""
    import io
    import os
    import tarfile

    path = os.path.join(folder, mf.read_manifest(folder).splits[split].shards[0].path)
    with tarfile.open(path) as tar:
        members = [(*m.name.split(".", 1), tar.extractfile(m).read()) for m in tar.getmembers()]
    keys = list(dict.fromkeys(key for key, _, _ in members))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for key, column, data in members:
            key, data = edit(keys.index(key), key, column, data)
            info = tarfile.TarInfo(f"{key}.{column}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    rehash_shards(folder, split)
    return keys


def test_oversized_samples_are_skipped_before_decoding(paired, tmp_path):
    """In a shard whose hash matches: a decompression bomb (65 KB → 8192² pixels) as sample 0's input and a header
    claiming 50000² as sample 1's target. Both samples are skipped and counted with the reason; the rest are read."""
    import shutil

    from tests.pipelines.test_bounds import bomb_png, header_png

    crafted = {(0, "input.png"): bomb_png(), (1, "target.png"): header_png(50_000, 50_000)}
    out = str(tmp_path / "d")
    shutil.copytree(paired, out)
    keys = rewrite_shard(out, "val", lambda i, key, column, data: (key, crafted.get((i, column), data)))
    data = read_split(out, "val", with_keys=True)
    rows = data.dataset.take_all()
    assert len(rows) == mf.read_manifest(out).splits["val"].samples - 2
    assert sorted((key, "image too large" in reason) for _, key, reason in data.skipped()) == [
        (keys[0], True), (keys[1], True)]


def test_shards_are_hashed_in_ray_tasks_once_per_manifest_and_again_where_changed(paired, tmp_path, monkeypatch):
    """The driver hashes no shard (its sha256 is broken here; Ray tasks, in their own processes, hash); the result is
    recorded beside the manifest, so a second read hashes nothing; a shard rewritten since is hashed again and
    refused by name."""
    import json
    import shutil

    from pipelines import data

    out = tmp_path / "v"
    shutil.copytree(paired, out, ignore=shutil.ignore_patterns(data.VERIFIED_NAME))

    def no_hashing_here(uri):
        raise AssertionError(f"the driver read shard bytes: {uri}")

    monkeypatch.setattr(mf, "sha256_of", no_hashing_here)
    data.verify_dataset(str(out), ["train", "val"])
    record = json.loads((out / data.VERIFIED_NAME).read_text())
    m = mf.read_manifest(str(out))
    assert record["manifest_id"] == m.id
    assert set(record["shards"]) == {s.path for split in ("train", "val") for s in m.splits[split].shards}

    real_task = data._check_shard_task
    monkeypatch.setattr(data, "_check_shard_task", lambda: pytest.fail("a verified, unchanged shard was hashed again"))
    assert len(read_split(str(out), "train").dataset.take_all()) == m.splits["train"].samples

    shard = out / m.splits["train"].shards[1].path
    blob = bytearray(shard.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    shard.write_bytes(bytes(blob))
    monkeypatch.setattr(data, "_check_shard_task", real_task)
    with pytest.raises(ShardIntegrityError, match=r"train/shard-000001\.tar does not match the manifest"):
        read_split(str(out), "train")


def test_single_domain_datasets_from_an_images_folder_and_from_one_domain(unpaired, paired, demo_root, tmp_path):
    """A single-domain family reads one domain of images: a folder of images sharded as layout ``images`` (data mode
    single), or one domain of an unpaired dataset, in train batches {"image"} (random crop + flip) and val
    batches."""
    import shutil

    from pipelines import feeds
    from pipelines.errors import DatasetError

    src = tmp_path / "photos"
    shutil.copytree(f"{demo_root}/photo2winter/trainA", src)  # a flat folder of photos
    out = str(tmp_path / "shards")
    run_shard(ShardConfig(source=str(src), output=out, load_size=32, num_shards=2))
    m = mf.read_manifest(out)
    n = len(list(src.iterdir()))
    assert (m.data_mode, m.domains, m.source.layout) == ("single", ["images"], "images")
    assert {s: e.samples for s, e in m.splits.items()}.keys() == {"train", "val"}
    assert sum(e.samples for e in m.splits.values()) == n and m.splits["val"].samples >= 1
    um = mf.read_manifest(unpaired)
    for dataset, domain, count in ((out, None, m.splits["train"].samples),
                                   (unpaired, "A", um.splits["train"].domains["A"])):
        picked = feeds.single_domain(mf.read_manifest(dataset), domain)
        ds = feeds.datasets("single", dataset, train_split="train", val_split="val" if domain is None else "test",
                            seed=0, domain=picked)
        config = {"batch_size": 2, "shuffle_buffer": 0, "crop_size": 24, "flip": True, "seed": 0}
        batches = list(feeds.train_batches("single", ds.__getitem__, config, 0, 0, torch.Generator().manual_seed(0)))
        assert all(set(b) == {"image"} and b["image"].shape[1:] == (3, 24, 24) for b in batches)
        assert sum(b["image"].shape[0] for b in batches) == count - count % 2  # every image of the domain, once
        rows = ds["train"].take_all()
        assert len(rows) == count and {r["domain"] for r in rows} == {0}  # A is domain 0; the images' one domain 0
        val = list(feeds.val_batches("single", ds.__getitem__, config))
        assert sum(b["image"].shape[0] for b in val) == (m.splits["val"].samples if domain is None
                                                         else um.splits["test"].domains["A"])
    # what cannot be one domain says how to fix it
    with pytest.raises(DatasetError, match="has 2 .*A, B.*set train.domain"):
        feeds.single_domain(um, None)
    with pytest.raises(DatasetError, match="no domain 'C'.*A, B"):
        feeds.single_domain(um, "C")
    with pytest.raises(DatasetError, match="leave train.domain unset"):
        feeds.single_domain(m, "A")
    with pytest.raises(DatasetError, match="is paired .*shard a folder of images .*train.domain"):
        feeds.single_domain(mf.read_manifest(paired), None)


# --- the semi-paired feed (Triangle GAN) --------------------------------------------------------------------------
def test_semi_paired_split_is_seeded_stable_nested_and_respects_the_fraction():
    from pipelines.feeds import is_paired

    keys = [f"sample_{i:05d}" for i in range(20_000)]
    for f in (0.0, 0.1, 0.3, 1.0):
        assert sum(is_paired(k, f, 0) for k in keys) / len(keys) == pytest.approx(f, abs=0.01)
    small = {k for k in keys if is_paired(k, 0.1, 0)}
    assert small < {k for k in keys if is_paired(k, 0.3, 0)}  # a larger fraction keeps the smaller one's pairs
    assert small != {k for k in keys if is_paired(k, 0.1, 1)}  # seeded
    assert small == {k for k in keys if is_paired(k, 0.1, 0)}  # a function of (seed, key): every epoch and rank


def test_semi_paired_feed_never_gives_an_unpaired_sample_as_a_pair(paired):
    """One epoch from real shards through Ray Data: pairs only from the paired part, A and B images only from the
    unpaired part, B drawn apart from A; ``batch_size`` of each kind in every batch; images traced to the samples
    by their pixels (two samples may share an edge map: compared as sets of digests)."""
    import hashlib

    from pipelines import feeds

    def digests(x) -> list[str]:  # model images (N, 3, H, W) in [-1, 1] or stored uint8 HWC → pixel digests
        if isinstance(x, torch.Tensor):
            x = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [hashlib.sha256(np.ascontiguousarray(a, dtype=np.uint8).tobytes()).hexdigest() for a in x]

    rows = read_split(paired, "train", with_keys=True).dataset.take_all()
    part = {True: [], False: []}
    for r in rows:
        part[feeds.is_paired(r["key"], 0.5, 0)].append((*digests([r["input"]]), *digests([r["target"]])))
    ds = feeds.datasets("paired", paired, train_split="train", val_split="val", seed=0, paired_fraction=0.5)
    assert set(ds) == {"train", "train_b", "train_pairs", "val"} and feeds.unsplit(
        "paired", semi_paired=True) == ["train_b", "train_pairs"]  # the cycled streams: read whole by every worker
    config = {"batch_size": 2, "shuffle_buffer": 4, "crop_size": 32, "flip": False, "seed": 0, "paired_fraction": 0.5}
    batches = list(feeds.train_batches("paired", ds.__getitem__, config, 0, 0, torch.Generator().manual_seed(0)))
    assert part[True] and len(batches) == len(part[False]) // 2  # one pass over the unpaired part
    for b in batches:
        assert set(b) == {"input", "target", "real_a", "real_b"} and all(v.shape[0] == 2 for v in b.values())
        assert set(zip(digests(b["input"]), digests(b["target"]))) <= set(part[True])  # pairs of the paired part
        assert set(digests(b["real_a"])) <= {a for a, _ in part[False]}
        assert set(digests(b["real_b"])) <= {t for _, t in part[False]}
        assert not set(zip(digests(b["real_a"]), digests(b["real_b"]))) & set(part[False])  # no A beside its own B
    # the fractions at the ends: no pairs at all, or pairs only
    assert set(feeds.datasets("paired", paired, train_split="train", val_split="val", seed=0, paired_fraction=0.0)) \
        == {"train", "train_b", "val"}
    assert set(feeds.datasets("paired", paired, train_split="train", val_split="val", seed=0, paired_fraction=1.0)) \
        == {"train", "val"}


class _Rows:
    """In-memory rows that iterate like a Ray dataset shard (for the feed's batch assembly at the ends)."""

    def __init__(self, n: int, fill: int):
        self.images = torch.full((n, 4, 4, 3), fill, dtype=torch.uint8)

    def iter_torch_batches(self, *, batch_size, drop_last, **_):
        for i in range(0, len(self.images) - (batch_size - 1 if drop_last else 0), batch_size):
            yield {"input": self.images[i:i + batch_size], "target": self.images[i:i + batch_size]}


def test_semi_paired_batches_without_pairs_only_pairs_and_too_few_pairs():
    from pipelines import feeds
    from pipelines.errors import DatasetError

    config = {"batch_size": 2, "shuffle_buffer": 0, "crop_size": 4, "flip": False, "seed": 0}
    gen = torch.Generator().manual_seed(0)
    run = lambda f, data: list(feeds.train_batches(  # noqa: E731
        "paired", data.__getitem__, {**config, "paired_fraction": f}, 0, 0, gen))
    none = run(0.0, {"train": _Rows(6, 1), "train_b": _Rows(6, 1)})
    assert len(none) == 3 and all(set(b) == {"real_a", "real_b"} for b in none)
    only = run(1.0, {"train": _Rows(6, 1)})
    assert len(only) == 3 and all(set(b) == {"input", "target"} for b in only)
    with pytest.raises(DatasetError, match=r"paired_fraction 0\.1\) holds fewer than 2 pairs"):
        run(0.1, {"train": _Rows(6, 1), "train_b": _Rows(6, 1), "train_pairs": _Rows(1, 2)})

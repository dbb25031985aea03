"""Read sharded datasets back: manifest → verified shard list → Ray Dataset → batches of float tensors in [-1, 1].

Only shards the manifest lists are read, and by default each is hashed against the manifest first (a mismatch is
refused with :class:`ShardIntegrityError`, naming the shard, before anything reads it). Hashing happens in Ray tasks,
in parallel, never in the driver (which reads the manifest and file metadata only), and its result is recorded
beside the manifest (``_verified.json``: the manifest id and each verified shard's size and modification time), so
a dataset is hashed once, not on every run or Tune trial, and again only where a shard changed since. Inside a shard, a sample that does not decode is skipped, logged and
counted (``ShardDataset.skipped()``), never fatal. A hash proves a shard is the one the manifest names, not that
its samples are sane, so every sample is bounded before it is decoded: at most ``max_sample_bytes`` bytes and
``max_sample_pixels`` pixels (read from the PNG header, before any pixel is allocated); a bigger one is skipped.

Augmentation (random crop + horizontal flip) happens on the training worker, on tensors, from a seeded
``torch.Generator``: a pair gets the *same* crop and flip for input and target; everything is deterministic for a
given seed. Unpaired domains are read as separate datasets, each shuffled with its own seed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import torch

from pipelines import storage
from pipelines.errors import ShardIntegrityError, StorageError
from pipelines.manifest import IMAGE_COLUMNS, PAIRED_COLUMNS, Manifest, base_uri, check_shard, read_manifest

log = logging.getLogger(__name__)
# Ray Data read/decode tasks ask for a quarter CPU: on small nodes shared with Train workers and Tune trials a
# whole CPU per task deadlocks (a read holds the last CPU while the decode it feeds waits for one).
TASK_CPUS = 0.25
# Sample bounds: shard.load_size is at most 4096, so no sample the shard step wrote has more pixels; a 4096² RGB
# PNG of noise is ~50 MB. Anything bigger was not written by the shard step (a crafted or corrupted sample).
MAX_SAMPLE_PIXELS = 4096 * 4096
MAX_SAMPLE_BYTES = 64 * 2**20
MAX_LABEL_BYTES = 16  # domain.cls: a small integer as text
VERIFIED_NAME = "_verified.json"  # beside manifest.json: what verify_dataset hashed, and what it looked like then


def _skip_log_class():
    import ray

    @ray.remote(num_cpus=0)
    class SkipLog:
        """Collects (shard, key, reason) of samples that failed to decode, across tasks and epochs."""

        def __init__(self):
            self.seen: dict[tuple[str, str], str] = {}

        def add(self, items: list[tuple[str, str, str]]) -> None:
            for url, key, reason in items:
                self.seen[(url, key)] = reason

        def items(self) -> list[tuple[str, str, str]]:
            return [(u, k, r) for (u, k), r in sorted(self.seen.items())]

    return SkipLog


def _stat(base: str, m: Manifest, splits) -> dict[str, list[int]]:
    """{shard path: [size, mtime_ns]} of the listed shards of ``splits`` as storage has them now (metadata only,
    one listing per folder); a missing shard is absent."""
    folders = {s.path.rsplit("/", 1)[0] for split in splits for s in m.splits[split].shards if "/" in s.path}
    found = {}
    for folder in sorted(folders):
        for e in storage.list_files(storage.join(base, folder)):
            found[f"{folder}/{e.relpath}"] = [e.size, e.mtime_ns]
    return found


def _check_shard_task():
    import ray

    return ray.remote(num_cpus=TASK_CPUS)(check_shard)


def verify_dataset(manifest: str, splits) -> Manifest:
    """Check every shard of ``splits`` against the manifest (sha256 and size) in parallel Ray tasks; raise
    :class:`ShardIntegrityError` naming the shard(s) that do not match. Shards recorded in ``_verified.json`` as
    verified for this manifest id, and unchanged since (same size and modification time), are not hashed again."""
    import ray

    from pipelines.cluster import init_ray

    m = read_manifest(manifest)
    base = base_uri(manifest)
    splits = list(dict.fromkeys(splits))
    for split in splits:
        m.shard_uris(base, split)  # an unknown split: a clear error
    record_uri = storage.join(base, VERIFIED_NAME)
    record = storage.read_json(record_uri) or {}
    done = record.get("shards", {}) if record.get("manifest_id") == m.id else {}
    now = _stat(base, m, splits)
    todo = [(split, entry) for split in splits for entry in m.splits[split].shards
            if entry.path not in now or done.get(entry.path) != now[entry.path]]
    if not todo:
        return m
    init_ray()
    task = _check_shard_task()
    log.info("verifying %d shard(s) of %s against its manifest in Ray tasks", len(todo), m.dataset)
    problems = ray.get([task.remote(storage.join(base, e.path), e) for _, e in todo])
    bad = [p for p in problems if p is not None]
    if bad:
        more = f" (and {len(bad) - 1} more: {', '.join(p.split(' ', 2)[1] for p in bad[1:4])}…)" if len(bad) > 1 else ""
        raise ShardIntegrityError(bad[0] + more)
    verified = {**done, **{e.path: now[e.path] for _, e in todo}}
    try:
        storage.write_bytes(record_uri, json.dumps({"manifest_id": m.id, "shards": verified}).encode())
    except StorageError as err:  # a read-only dataset location: verified now, hashed again next time
        log.warning("could not record the verification at %s (the shards will be hashed again next time): %s",
                    storage.describe(record_uri), err)
    return m


def _decode_png(data: bytes, *, max_bytes: int = MAX_SAMPLE_BYTES, max_pixels: int = MAX_SAMPLE_PIXELS
                ) -> np.ndarray:
    """One PNG sample → uint8 HWC RGB; too many bytes or pixels, another format or a broken file → BadImage."""
    from pipelines.importers import decode_rgb

    return np.asarray(decode_rgb(bytes(data), max_pixels=max_pixels, max_bytes=max_bytes, formats=("PNG",)),
                      dtype=np.uint8)


def _label(data: bytes) -> int:
    if len(data) > MAX_LABEL_BYTES:
        raise ValueError(f"domain label of {len(data)} bytes > {MAX_LABEL_BYTES}")
    return int(bytes(data).decode())


def _decode_batch(batch: dict, *, paired: bool, domain_index: int | None, with_keys: bool, skip_log,
                  max_bytes: int = MAX_SAMPLE_BYTES, max_pixels: int = MAX_SAMPLE_PIXELS) -> dict:
    """bytes columns → uint8 HWC arrays; undecodable (or oversized) samples are dropped and reported to
    ``skip_log``."""
    out: dict[str, list] = {"key": []}
    names = ("input", "target") if paired else ("image",)
    for n in names:
        out[n] = []
    if not paired:
        out["domain"] = []
    bad = []
    for i, key in enumerate(batch["__key__"]):
        try:
            if paired:
                arrays = [_decode_png(batch[c][i], max_bytes=max_bytes, max_pixels=max_pixels)
                          for c in PAIRED_COLUMNS]
            else:
                label = _label(batch[IMAGE_COLUMNS[1]][i])
                if domain_index is not None and label != domain_index:
                    continue
                arrays = [_decode_png(batch[IMAGE_COLUMNS[0]][i], max_bytes=max_bytes, max_pixels=max_pixels)]
        except Exception as err:  # noqa: BLE001 - any decode failure of one sample is a skip, not a crash
            bad.append((str(batch["__url__"][i]), str(key), f"{type(err).__name__}: {err}"))
            continue
        out["key"].append(str(key))
        for n, a in zip(names, arrays):
            out[n].append(a)
        if not paired:
            out["domain"].append(label)
    if bad:
        log.warning("skipping %d undecodable samples, e.g. %s", len(bad), bad[0])
        import ray

        ray.get(skip_log.add.remote(bad))
    result = {k: np.asarray(v) if v else np.zeros((0,), np.uint8) for k, v in out.items()}
    if "domain" in result:
        result["domain"] = result["domain"].astype(np.int64)
    if not with_keys:
        del result["key"]  # strings do not go to torch
    return result


@dataclass
class ShardDataset:
    dataset: "ray.data.Dataset"  # noqa: F821
    manifest: Manifest
    split: str
    domain: str | None
    _skip_log: object

    def skipped(self) -> list[tuple[str, str, str]]:
        """(shard URL, key, reason) of every sample skipped so far because it did not decode."""
        import ray

        return ray.get(self._skip_log.items.remote())


def read_split(manifest: str, split: str, *, domain: str | None = None, seed: int | None = None,
               verify_shards: bool = True, with_keys: bool = False, max_sample_bytes: int = MAX_SAMPLE_BYTES,
               max_sample_pixels: int = MAX_SAMPLE_PIXELS, task_cpus: float = TASK_CPUS) -> ShardDataset:
    """A Ray Dataset over one split (optionally one domain) of a sharded dataset.

    ``seed`` shuffles the shard order deterministically (and differently each epoch); with ``seed=None`` the order
    is the manifest's. Execution preserves order so the same seed gives the same stream. Columns: ``input`` and
    ``target`` (paired) or ``image`` and ``domain`` (int64), uint8 HWC images; plus ``key`` with ``with_keys``.
    A sample image over ``max_sample_bytes`` / ``max_sample_pixels`` is skipped (``skipped()``) undecoded.
    ``task_cpus``: what each read/decode task asks for; 0 for a dataset consumed inside a task that already holds
    the CPUs its reads use (else reads wait for CPUs that such tasks hold, and none finishes).
    """
    import ray
    from ray.data.datasource import FileShuffleConfig

    from pipelines.cluster import init_ray

    init_ray()  # never let Ray Data start (or join) a cluster on its own
    m = verify_dataset(manifest, [split]) if verify_shards else read_manifest(manifest)
    base = base_uri(manifest)
    uris = m.shard_uris(base, split, domain)  # unpaired data: only the domain's own shards
    domain_index = None
    if domain is not None:
        if domain not in m.domains:
            raise ValueError(f"dataset '{m.dataset}' has no domain '{domain}'; it has: {', '.join(m.domains)}")
        domain_index = m.domains.index(domain)
    fs, _ = storage.resolve(uris[0])
    paths = [storage.resolve(u)[1] for u in uris]
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    shuffle = FileShuffleConfig(seed=seed, reseed_after_execution=True) if seed is not None else None
    skip_log = _skip_log_class().remote()
    # at most one read/decode task per cluster CPU at a time: more only start more worker processes that share the
    # same CPUs, and the first batch (in shard order) then waits for all of them
    concurrency = max(2, int(ray.cluster_resources().get("CPU", 0)))
    ds = ray.data.read_webdataset(paths, filesystem=fs, decoder=None, shuffle=shuffle, num_cpus=task_cpus,
                                  concurrency=concurrency).map_batches(
        _decode_batch, batch_format="numpy", zero_copy_batch=False, num_cpus=task_cpus, concurrency=concurrency,
        fn_kwargs={"paired": m.data_mode == "paired", "domain_index": domain_index, "with_keys": with_keys,
                   "skip_log": skip_log, "max_bytes": max_sample_bytes, "max_pixels": max_sample_pixels},
    )
    return ShardDataset(ds, m, split, domain, skip_log)


def to_model_batch(batch: dict[str, torch.Tensor], *, crop_size: int | None = None, flip: bool = False,
                   generator: torch.Generator | None = None, center: bool = False) -> dict[str, torch.Tensor]:
    """uint8 NHWC image columns → float NCHW in [-1, 1], with the same random crop/flip per sample for every image
    column of that sample (so an input/target pair stays aligned). ``center``: the central crop (evaluation).
    Other columns pass through."""
    images = {k: v for k, v in batch.items() if k in ("input", "target", "image")}
    out = {k: v for k, v in batch.items() if k not in images}
    if not images:
        return out
    first = next(iter(images.values()))
    n, h, w = first.shape[0], first.shape[1], first.shape[2]
    size = crop_size or min(h, w)
    if size > min(h, w):
        raise ValueError(f"crop_size {size} is larger than the stored images ({h}x{w}); re-shard with a larger load_size")
    if center:
        ys, xs = torch.full((n,), (h - size) // 2), torch.full((n,), (w - size) // 2)
    else:
        ys = torch.randint(0, h - size + 1, (n,), generator=generator)
        xs = torch.randint(0, w - size + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    for k, v in images.items():
        crops = [v[i, ys[i] : ys[i] + size, xs[i] : xs[i] + size] for i in range(n)]
        x = torch.stack([c.flip(1) if f else c for c, f in zip(crops, flips)])
        out[k] = x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
    return out

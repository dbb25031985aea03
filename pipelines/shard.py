"""Shard an image dataset into WebDataset tars on object storage, with a manifest as the commit point.

One Ray Data task per shard reads its source images, validates, decodes, resizes and PNG-encodes them, and
streams a deterministic tar (sorted keys, fixed mtime) to the output while hashing it. The plan — which file goes
to which shard — is fixed before any work starts (sorted paths, round-robin), so shards are equal in size to
within one sample, a retried or re-run task rewrites exactly the same shard, and a run killed halfway leaves only
shards that the next run overwrites. The manifest is deleted before and written after everything else; readers
trust only shards it lists. Re-running with the same source and config is a no-op.

Versioned datasets (``shard.version``, set by the nightly to its date): each version is a folder
``<output>/<version>/`` of its own, and a new one is written only when the source (files added, removed or changed)
or the shard config differs from the latest earlier version; otherwise that version is the result. Versions are
never rewritten by a later date, so a registered model's ``i2i.dataset_version`` keeps pointing at its data.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import posixpath
import re
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Literal

from urllib.parse import urlparse

from pydantic import Field, field_validator

from pipelines import importers, storage
from pipelines.errors import DatasetError
from pipelines.importers import Layout, Skipped
from pipelines.progress import Progress
from pipelines.manifest import (
    FORMAT, IMAGE_COLUMNS, PAIRED_COLUMNS, Manifest, ShardEntry, SkippedFile, SourceInfo, SplitEntry, content_id,
    load_manifest, manifest_uri, read_manifest, versions_of, write_manifest,
)
from pipelines.schema import StrictModel, check_name

log = logging.getLogger(__name__)
_SHARD_NAME = re.compile(r"^shard-\d{6}\.tar$")


class ShardConfig(StrictModel):
    source: str  # folder or URI of the dataset in one of the importers' layouts
    output: str  # folder or URI to write <split>/shard-*.tar and manifest.json to
    name: str | None = None  # dataset name (registry names use it); default: the source's last path component
    layout: Layout = "auto"
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # paired only: which half of A|B is the input
    load_size: int = Field(default=286, ge=8, le=4096)  # images are resized to load_size² (pix2pix: 286 → crop 256)
    samples_per_shard: int = Field(default=500, gt=0)
    num_shards: int | None = Field(default=None, gt=0)  # per split; overrides samples_per_shard
    max_pixels: int = Field(default=50_000_000, gt=0)  # decompression-bomb guard, per source image
    png_compress_level: int = Field(default=1, ge=0, le=9)  # 1: fast to write, ~10% larger than 6
    version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # <output>/<version>/ when set

    _safe_name = field_validator("name")(check_name)  # it names run folders and registered models

    def dataset_name(self) -> str:
        """``name``, else the source folder's name made safe (``my photos`` → ``my-photos``)."""
        if self.name:
            return self.name
        base = posixpath.basename(urlparse(self.source).path.rstrip("/") if "://" in self.source
                                  else self.source.rstrip("/"))
        safe = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.-]+", "-", base)).strip("-.")[:128]
        return safe or "dataset"


@dataclass(frozen=True)
class ShardResult:
    manifest: str
    dataset: str
    dataset_id: str
    output: str  # the dataset folder to train from (``<output>/<version>`` for a versioned dataset)
    version: str | None  # the version it holds (an earlier one when nothing changed since), None if unversioned
    up_to_date: bool  # True: nothing to do, the existing manifest matches source and config
    shards: int
    samples: dict[str, int]
    domains: dict[str, dict[str, int]]
    skipped: int
    skipped_by_reason: dict[str, int]
    bytes: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


def sample_key(relpath: str) -> str:
    """A dot-free, unique, readable WebDataset ``__key__`` for a source path."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", posixpath.splitext(relpath)[0])[-64:].strip("_")
    return f"{stem}-{hashlib.sha1(relpath.encode()).hexdigest()[:8]}"


def code_version() -> str:
    version = metadata.version("i2i")
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=posixpath.dirname(__file__)).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+g{sha}" if sha else version


class _HashingWriter:
    """File-like wrapper that hashes and counts what is written through it."""

    def __init__(self, stream):
        self.stream, self.sha, self.bytes = stream, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.bytes += len(data)
        return self.stream.write(data)

    def flush(self) -> None:
        pass


def _png(im, size: int, level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im.resize((size, size), Image.Resampling.BICUBIC).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _encode(data: bytes, paired: bool, cfg: ShardConfig) -> dict[str, bytes]:
    im = importers.decode_rgb(data, max_pixels=cfg.max_pixels)
    if not paired:
        return {"image.png": _png(im, cfg.load_size, cfg.png_compress_level)}
    a, b = importers.split_pair(im)
    src, dst = (a, b) if cfg.direction == "AtoB" else (b, a)
    return {"input.png": _png(src, cfg.load_size, cfg.png_compress_level),
            "target.png": _png(dst, cfg.load_size, cfg.png_compress_level)}


def write_shard(plan: dict, *, cfg_json: str, source: str, root: str, paired: bool) -> dict:
    """Ray Data task: build one shard from its planned source files; return its stats and skipped files."""
    import webdataset as wds

    cfg = ShardConfig.model_validate_json(cfg_json)
    files = json.loads(plan["files"])  # [[relpath, key, domain_index, domain_name], ...] sorted by key
    fs, path = storage.resolve(storage.join(cfg.output, plan["shard"]))
    skipped, domains, n = [], Counter(), 0
    uri = storage.join(cfg.output, plan["shard"])
    with storage.errors("write shard", uri):
        if hasattr(fs, "create_dir") and type(fs).__name__ == "LocalFileSystem":
            fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:
            hashing = _HashingWriter(out)
            with wds.TarWriter(hashing, user="i2i", group="i2i", mtime=0, encoder=False) as tar:
                for relpath, key, domain_index, domain_name in files:
                    src_uri = storage.join(source, *filter(None, [root, relpath]))
                    try:
                        sample = _encode(storage.read_bytes(src_uri), paired, cfg)
                    except importers.BadImage as err:
                        skipped.append([relpath, str(err)])
                        continue
                    except FileNotFoundError:
                        skipped.append([relpath, "file disappeared while sharding"])
                        continue
                    if not paired:
                        sample["domain.cls"] = str(domain_index).encode()
                    tar.write({"__key__": key, **sample})
                    domains[domain_name] += 1
                    n += 1
    return {"shard": plan["shard"], "split": plan["split"], "domain": plan["domain"], "samples": n, "bytes": hashing.bytes,
            "sha256": hashing.sha.hexdigest(), "domains": json.dumps(domains), "skipped": json.dumps(skipped)}


def _plan(listing: importers.SourceListing, cfg: ShardConfig) -> list[dict]:
    """Which source files go to which shard. Unpaired data get shards per domain (``<split>/<domain>/``), so a
    training run reads each domain's stream on its own and every byte once; ``num_shards`` then counts per domain."""
    groups: dict[tuple[str, str], list] = {}
    for f in listing.files:
        dom_index = listing.domains.index(f.domain) if listing.domains else -1
        own = f.domain if listing.data_mode == "unpaired" else ""
        groups.setdefault((f.split, own), []).append([f.relpath, sample_key(f.relpath), dom_index, f.domain or "all"])
    plans = []
    for (split, domain), files in sorted(groups.items()):
        files.sort(key=lambda r: r[1])
        n_shards = cfg.num_shards or max(1, math.ceil(len(files) / cfg.samples_per_shard))
        n_shards = min(n_shards, len(files))
        folder = f"{split}/{domain}" if domain else split
        for k in range(n_shards):
            plans.append({"shard": f"{folder}/shard-{k:06d}.tar", "split": split, "domain": domain,
                          "files": json.dumps(files[k::n_shards])})  # round-robin: sizes differ by ≤ 1
    return plans


def _plan_id(listing: importers.SourceListing, cfg: ShardConfig) -> str:
    spec = {"format": FORMAT, "source": listing.fingerprint, "layout": listing.layout,
            "config": cfg.model_dump(exclude={"output", "source", "name", "version"})}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _is_complete(manifest: Manifest, output: str) -> bool:
    """All listed shards exist with their recorded sizes (a cheap check; readers verify sha256)."""
    for split in manifest.splits.values():
        for s in split.shards:
            fs, path = storage.resolve(storage.join(output, s.path))
            if fs.get_file_info(path).size != s.bytes:
                return False
    return True


def _remove_stale(output: str, keep: set[str]) -> None:
    """Delete shard files left by earlier (killed or differently configured) runs that this plan does not list."""
    for e in storage.list_files(output):
        parts = e.relpath.split("/")  # <split>/shard-N.tar or <split>/<domain>/shard-N.tar
        if len(parts) in (2, 3) and _SHARD_NAME.match(parts[-1]) and e.relpath not in keep:
            storage.delete(storage.join(output, e.relpath))


def run_shard(cfg: ShardConfig, *, ray_config=None, resolved_config: dict | None = None) -> ShardResult:
    """Shard ``cfg.source`` into ``cfg.output`` (``<output>/<version>`` when versioned); a no-op when the manifest
    there — or, for a versioned dataset, the latest earlier version's — already matches source and config."""
    t0 = time.perf_counter()
    storage.check_reachable(cfg.source)
    storage.check_reachable(cfg.output)
    listing = importers.scan(cfg.source, cfg.layout)
    plan_id = _plan_id(listing, cfg)
    output = cfg.output
    if cfg.version is not None:
        output = storage.join(cfg.output, cfg.version)
        earlier = [v for v in versions_of(cfg.output) if v < cfg.version]
        if earlier and _matches(base := storage.join(cfg.output, earlier[-1]), plan_id):
            log.info("source and config unchanged since dataset version %s: no new version", earlier[-1])
            return _result(read_manifest(base), base, up_to_date=True, seconds=time.perf_counter() - t0)
        if load_manifest(output) is not None and not _matches(output, plan_id):
            raise DatasetError(
                f"dataset version {cfg.version} at {storage.describe(output)} was written from a different source "
                "or shard config, and versions are never rewritten: give this dataset its own shard.output, or a "
                "new version")
    if _matches(output, plan_id):
        log.info("dataset at %s is up to date (its manifest matches source and config): nothing to do", output)
        return _result(read_manifest(output), output, up_to_date=True, seconds=time.perf_counter() - t0)
    storage.delete(manifest_uri(output))  # un-commit first: a crash below must not leave it pointing here
    manifest = _write(cfg, listing, plan_id, output, ray_config, resolved_config)
    return _result(manifest, output, up_to_date=False, seconds=time.perf_counter() - t0)


def plan_shard(cfg: ShardConfig) -> dict:
    """What :func:`run_shard` would do with ``cfg``, without writing anything (``--dry-run``): the source listing
    (files by split, skipped by reason), the shards it would write, where, and whether the run is a no-op."""
    listing = importers.scan(cfg.source, cfg.layout)
    plan_id = _plan_id(listing, cfg)
    output = storage.join(cfg.output, cfg.version) if cfg.version else cfg.output
    earlier = [v for v in versions_of(cfg.output) if v < cfg.version] if cfg.version else []
    version = cfg.version
    if earlier and _matches(storage.join(cfg.output, earlier[-1]), plan_id):
        action, version = f"nothing: source and config unchanged since dataset version {earlier[-1]}", earlier[-1]
    elif _matches(output, plan_id):
        action = "nothing: the dataset there is up to date"
    else:
        action = "write the shards, then the manifest"
    shards = _plan(listing, cfg)
    return {"source": storage.describe(cfg.source), "layout": listing.layout, "data_mode": listing.data_mode,
            "files": dict(Counter(f.split for f in listing.files)), "domains": listing.domains,
            "skipped": dict(Counter(_reason_kind(s.reason) for s in listing.skipped)),
            "output": storage.describe(output), "version": version,
            "shards": dict(Counter(p["split"] for p in shards)), "plan_id": plan_id, "action": action}


def _matches(output: str, plan_id: str) -> bool:
    """The manifest at ``output`` commits this plan's shards (one cut short by a crash commits nothing)."""
    old = load_manifest(output)
    return old is not None and old.plan_id == plan_id and _is_complete(old, output)


def _write(cfg: ShardConfig, listing: importers.SourceListing, plan_id: str, output: str, ray_config,
           resolved_config: dict | None) -> Manifest:
    """Write every planned shard to ``output`` with Ray Data (one task per shard), then the manifest, last."""
    import ray

    from pipelines.cluster import init_ray

    plans = _plan(listing, cfg)
    init_ray(ray_config)  # only now: a no-op run needs no cluster
    paired = listing.data_mode == "paired"
    task_cfg = cfg.model_copy(update={"output": output})
    ds = ray.data.from_items(plans, override_num_blocks=len(plans)).map(
        write_shard,
        fn_kwargs={"cfg_json": task_cfg.model_dump_json(), "source": cfg.source, "root": listing.root,
                   "paired": paired},
    )  # a task lost with its worker is retried by Ray Data and rewrites the same shard
    progress = Progress(f"shard {cfg.dataset_name()}", len(listing.files), "files", logger=log)
    rows = []
    for row in ds.iter_rows():  # as each shard is written
        rows.append(row)
        progress.update(row["samples"] + len(json.loads(row["skipped"])))  # its files: written or skipped
    rows.sort(key=lambda r: r["shard"])

    skipped = list(listing.skipped) + [Skipped(p, r) for row in rows for p, r in json.loads(row["skipped"])]
    if sum(r["samples"] for r in rows) == 0:
        _remove_stale(output, keep=set())
        reasons = Counter(_reason_kind(s.reason) for s in skipped)
        raise DatasetError(
            f"no usable images in {cfg.source}: {len(skipped)} files skipped ({dict(reasons)}); e.g. "
            + "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        )
    splits: dict[str, SplitEntry] = {}
    for split in sorted({r["split"] for r in rows}):
        mine = [r for r in rows if r["split"] == split and r["samples"] > 0]
        doms: Counter = Counter()
        for r in mine:
            doms.update(json.loads(r["domains"]))
        splits[split] = SplitEntry(
            samples=sum(r["samples"] for r in mine), bytes=sum(r["bytes"] for r in mine),
            domains={d: doms.get(d, 0) for d in (listing.domains or ["all"])},
            shards=[ShardEntry(path=r["shard"], samples=r["samples"], bytes=r["bytes"], sha256=r["sha256"],
                               domain=r["domain"] or None) for r in mine],
        )
    _remove_stale(output, keep={s.path for e in splits.values() for s in e.shards})
    manifest = Manifest(
        id=content_id(splits), dataset=cfg.dataset_name(), version=cfg.version,
        data_mode=listing.data_mode,  # type: ignore[arg-type]
        columns=list(PAIRED_COLUMNS if paired else IMAGE_COLUMNS), domains=listing.domains, plan_id=plan_id,
        source=SourceInfo(uri=storage.redact_uri(cfg.source), layout=listing.layout, files=len(listing.files),
                          fingerprint=listing.fingerprint),  # no credentials in the manifest: URIs are redacted
        config=storage.redact_values(resolved_config or {"shard": cfg.model_dump()}), code_version=code_version(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), splits=splits,
        skipped=[SkippedFile(path=s.path, reason=s.reason) for s in skipped],
    )
    write_manifest(output, manifest)  # the commit point: last
    return manifest


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()


def _result(m: Manifest, output: str, *, up_to_date: bool, seconds: float) -> ShardResult:
    warnings = [
        f"split '{split}' has no usable images in domain '{d}'"
        for split, e in m.splits.items() for d, n in e.domains.items() if n == 0
    ]
    return ShardResult(
        manifest=manifest_uri(output), dataset=m.dataset, dataset_id=m.id, output=output, version=m.version,
        up_to_date=up_to_date,
        shards=sum(len(e.shards) for e in m.splits.values()),
        samples={s: e.samples for s, e in m.splits.items()}, domains={s: e.domains for s, e in m.splits.items()},
        skipped=len(m.skipped), skipped_by_reason=dict(Counter(_reason_kind(s.reason) for s in m.skipped)),
        bytes=sum(e.bytes for e in m.splits.values()), seconds=round(seconds, 2), warnings=warnings,
    )


def result_dict(r: ShardResult) -> dict:
    return asdict(r)

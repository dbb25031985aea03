"""The dataset manifest: the commit point of a sharded dataset, and the sample format, defined once.

Shards are plain WebDataset tars (``tar -t`` lists ``<key>.<column>``), one folder per split::

    <output>/manifest.json              written last: readers trust only the shards it lists
    <output>/<split>/shard-000000.tar   …  (paired, labeled and single-domain data)
    <output>/<split>/<domain>/shard-000000.tar  (unpaired data: each domain in shards of its own, read on its own)

Sample columns (``__key__`` is dot-free, derived from the source path):

* paired data (pix2pix): ``input.png`` and ``target.png`` (RGB PNG, ``load_size``², input = the ``direction``'s
  source half of the A|B image);
* unpaired, labeled and single-domain data: ``image.png`` and ``domain.cls`` (the domain's index in
  ``manifest.domains``; single-domain data, sharded from an ``images`` folder, has the one domain ``images``).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import pydantic

from pipelines import storage
from pipelines.errors import ShardIntegrityError
from pipelines.schema import check_name

FORMAT = "i2i-webdataset/1"
MANIFEST_NAME = "manifest.json"
PAIRED_COLUMNS = ("input.png", "target.png")
IMAGE_COLUMNS = ("image.png", "domain.cls")
HASH_CHUNK = 4 << 20


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)


class ShardEntry(_Record):
    path: str  # relative to the manifest's folder: <split>/[<domain>/]shard-NNNNNN.tar, never leading out of it
    samples: int
    bytes: int
    sha256: str
    domain: str | None = None  # unpaired data: the one domain every sample of the shard is in (None: mixed)

    @pydantic.field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        parts = v.split("/")
        if not v or v.startswith("/") or "\\" in v or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"shard path {v!r} is not a plain relative path inside the dataset folder")
        return v


class SplitEntry(_Record):
    samples: int
    bytes: int
    domains: dict[str, int]
    shards: list[ShardEntry]


class SourceInfo(_Record):
    uri: str
    layout: str
    files: int
    fingerprint: str


class SkippedFile(_Record):
    path: str
    reason: str


class Manifest(_Record):
    format: Literal["i2i-webdataset/1"] = FORMAT
    id: str  # sha256 over every shard's (split, path, sha256): same data, same id
    dataset: str
    version: str | None = None  # the dataset version (a nightly's date) when sharded into <root>/<version>/
    data_mode: Literal["paired", "unpaired", "labeled", "single"]
    columns: list[str]
    domains: list[str]
    plan_id: str  # sha256 of (source fingerprint, shard config, format): equal plan → the run is a no-op
    source: SourceInfo
    config: dict
    code_version: str
    created: str
    splits: dict[str, SplitEntry]
    skipped: list[SkippedFile]

    _safe_dataset = pydantic.field_validator("dataset")(check_name)  # it names run folders and registered models

    def shard_uris(self, base: str, split: str, domain: str | None = None) -> list[str]:
        """The split's shards; with ``domain``, only the shards that can hold it (all, where shards mix domains)."""
        if split not in self.splits:
            raise ShardIntegrityError(
                f"dataset '{self.dataset}' has no split '{split}'; it has: {', '.join(sorted(self.splits))}"
            )
        return [storage.join(base, s.path) for s in self.splits[split].shards
                if domain is None or s.domain in (None, domain)]


def content_id(splits: dict[str, SplitEntry]) -> str:
    h = hashlib.sha256()
    for name in sorted(splits):
        for s in splits[name].shards:
            h.update(f"{name}\0{s.path}\0{s.sha256}\n".encode())
    return h.hexdigest()


def manifest_uri(output: str) -> str:
    return output if output.endswith(".json") else storage.join(output, MANIFEST_NAME)


def base_uri(manifest_or_output: str) -> str:
    """The folder the manifest's shard paths are relative to."""
    if manifest_or_output.endswith(".json"):
        return manifest_or_output.rsplit("/", 1)[0] if "/" in manifest_or_output else "."
    return manifest_or_output


def load_manifest(uri: str) -> Manifest | None:
    """The manifest at ``<output>/manifest.json`` (or a ``.json`` URI); None when there is none — or when it does not
    parse (a file cut short by a crash or a full disk is no commit: the dataset is re-sharded)."""
    doc = storage.read_json(manifest_uri(uri))
    if doc is None:
        return None
    try:
        return Manifest.model_validate(doc)
    except pydantic.ValidationError as err:  # a whole JSON document that is not ours: not to be overwritten silently
        raise ShardIntegrityError(f"manifest {storage.describe(manifest_uri(uri))} is not a valid i2i manifest: "
                                  f"{err}") from None


def read_manifest(uri: str) -> Manifest:
    """Read ``<output>/manifest.json`` (or a ``.json`` URI); a missing (or unreadable) one is a clear error."""
    if (manifest := load_manifest(uri)) is not None:
        return manifest
    target = manifest_uri(uri)
    if versions := versions_of(uri):
        raise ShardIntegrityError(
            f"{storage.describe(uri)} is a versioned dataset ({', '.join(versions[-3:])}"
            f"{', …' if len(versions) > 3 else ''}): point at one version, e.g. {storage.join(uri, versions[-1])}")
    raise ShardIntegrityError(
        f"no manifest at {storage.describe(target)} (or one cut short): the dataset was never sharded there, or its "
        "sharding run did not finish (run `i2i shard` again)")


def versions_of(root: str) -> list[str]:
    """The dataset versions under ``root`` (sub-folders holding a manifest), oldest first (names sort by date)."""
    if root.endswith(".json"):
        return []
    return [v for v in storage.list_dirs(root) if storage.exists(storage.join(root, v, MANIFEST_NAME))]


def write_manifest(output: str, manifest: Manifest) -> str:
    """Write the manifest atomically (temp + rename locally, one PUT on S3): the commit point of a dataset."""
    target = manifest_uri(output)
    storage.write_bytes(target, manifest.model_dump_json(indent=1).encode())
    return target


def sha256_of(uri: str) -> tuple[str, int]:
    fs, path = storage.resolve(uri)
    h, n = hashlib.sha256(), 0
    with storage.errors("read", uri), fs.open_input_stream(path) as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def check_shard(uri: str, entry: ShardEntry) -> str | None:
    """What is wrong with one shard against its manifest entry (None: it matches): hashes the whole shard."""
    try:
        digest, size = sha256_of(uri)
    except FileNotFoundError:
        return f"shard {uri} listed in the manifest is missing"
    if digest != entry.sha256 or size != entry.bytes:
        return (f"shard {uri} does not match the manifest (sha256 {digest[:12]}…, {size} bytes; expected "
                f"{entry.sha256[:12]}…, {entry.bytes} bytes): it was modified or corrupted; re-shard the dataset")
    return None


def verify(manifest: Manifest, base: str, split: str) -> list[str]:
    """Hash every shard of ``split`` against the manifest, one after another in this process; return their URIs or
    raise ShardIntegrityError. (Readers use the parallel, recorded :func:`pipelines.data.verify_dataset`.)"""
    uris = manifest.shard_uris(base, split)
    for uri, entry in zip(uris, manifest.splits[split].shards):
        if (problem := check_shard(uri, entry)) is not None:
            raise ShardIntegrityError(problem)
    return uris

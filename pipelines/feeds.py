"""What a training run reads, per data mode: the Ray Datasets it hands to Ray Train, and the model batches a worker
builds from its shards of them.

* **paired** (pix2pix): ``train`` / ``val`` → ``{"input", "target"}``, one random crop + flip per pair.
* **unpaired** (CycleGAN, UNIT, MUNIT): ``train_a`` / ``train_b`` (and ``val_a`` / ``val_b``), each domain read and
  shuffled on its own → ``{"real_a", "real_b"}``. As the authors' unaligned loader, an epoch is one pass over the
  larger domain while the other one cycles.
* **labeled** (StarGAN v2): ``train`` → ``{"image", "domain"}``; a second, differently shuffled stream
  ``train_ref`` fills a small pool per domain, from which each sample gets a target domain and two different
  reference images of it (``ref``, ``ref2``, ``ref_domain``) — what the authors' reference loader gives.
* **semi-paired** (Triangle GAN: a paired family with ``semi_paired``, data mode ``paired``): each training pair
  is *paired* or *unpaired* by a seeded, stable rule on its key (:func:`is_paired`: the same on every epoch, rank and
  re-run; about ``paired_fraction`` of the pairs). ``train`` = the unpaired samples (split across workers: an epoch
  is one pass over them) gives ``real_a`` (their A images); ``train_b``, a second, differently shuffled stream of the
  unpaired samples that every worker reads whole and cycles, gives ``real_b`` (their B images) — drawn independently
  of ``real_a``, so their pairing is lost; ``train_pairs`` (the paired samples, whole, cycled) gives ``input`` /
  ``target``. Every batch holds the same numbers of each, on every rank (one DDP step per batch needs it).
  ``paired_fraction`` 0: no ``train_pairs``, batches without pairs; 1: every sample a pair, the paired feed.
  Validation reads the whole ``val`` split as pairs.
* **single** (AE, VAE, GAN, …): ``train`` / ``val`` → ``{"image"}`` (random crop + flip), one domain of images: an
  ``images`` dataset, or the one domain ``train.domain`` names of an unpaired or labeled dataset
  (:func:`single_domain`; read with ``read_split(domain=…)``: an unpaired domain's own shards, a labeled domain's
  samples).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np
import torch

from pipelines.data import read_split, to_model_batch
from pipelines.errors import DatasetError

REF_POOL = 32  # reference images kept per domain


def single_domain(manifest, domain: str | None, model: str = "a single-domain model") -> str:
    """The domain of ``manifest`` a single-domain family learns: the one domain of an ``images`` dataset, or
    ``domain`` (``train.domain``) of an unpaired / labeled one; a paired dataset, a missing or an unknown domain is
    a :class:`DatasetError` that names the fix."""
    name, domains = manifest.dataset, manifest.domains
    if manifest.data_mode == "paired":
        raise DatasetError(
            f"{model} learns one domain of images, but dataset '{name}' is paired (A|B pairs): shard a folder of "
            "images (shard.layout: images) or an unaligned / domains dataset and pick one domain with train.domain")
    if manifest.data_mode == "single":
        if domain is not None and domain not in domains:
            raise DatasetError(f"dataset '{name}' holds one domain ('{domains[0]}'), not '{domain}': leave "
                               "train.domain unset")
        return domains[0]
    if domain is None:
        raise DatasetError(f"{model} learns one domain of images, but dataset '{name}' has {len(domains)} "
                           f"({', '.join(domains)}): set train.domain to one of them, e.g. --set "
                           f"train.domain={domains[0]}")
    if domain not in domains:
        raise DatasetError(f"dataset '{name}' has no domain '{domain}' (train.domain); it has: {', '.join(domains)}")
    return domain


def datasets(data_mode: str, dataset: str, *, train_split: str, val_split: str, seed: int,
             domain: str | None = None, paired_fraction: float | None = None) -> dict:
    """The Ray Datasets of one run, by the names the loop asks for (``domain``: the single-domain family's;
    ``paired_fraction``: a semi-paired family's, on paired data)."""
    if data_mode == "paired" and paired_fraction is not None:
        return _semi_paired_datasets(dataset, train_split, val_split, seed, paired_fraction)
    if data_mode == "single":
        return {"train": read_split(dataset, train_split, domain=domain, seed=seed).dataset,
                "val": read_split(dataset, val_split, domain=domain).dataset}
    if data_mode == "paired":
        return {"train": read_split(dataset, train_split, seed=seed).dataset,
                "val": read_split(dataset, val_split).dataset}
    if data_mode == "unpaired":
        return {"train_a": read_split(dataset, train_split, domain="A", seed=seed).dataset,
                "train_b": read_split(dataset, train_split, domain="B", seed=seed + 1).dataset,
                "val_a": read_split(dataset, val_split, domain="A").dataset,
                "val_b": read_split(dataset, val_split, domain="B").dataset}
    if data_mode == "labeled":
        return {"train": read_split(dataset, train_split, seed=seed).dataset,
                "train_ref": read_split(dataset, train_split, seed=seed + 1).dataset,
                "val": read_split(dataset, val_split).dataset}
    raise DatasetError(f"no training feed for data mode '{data_mode}'")


def is_paired(key: str, paired_fraction: float, seed: int) -> bool:
    """Whether the training sample ``key`` is used as a pair (else as an unpaired A and B sample): a uniform number
    in [0, 1) hashed from (seed, key) is below ``paired_fraction`` — stable across epochs, ranks and re-runs, about
    ``paired_fraction`` of the samples, and a larger fraction keeps every pair a smaller one had."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2.0**64
    return u < paired_fraction


def _part(shards, *, paired: bool, paired_fraction: float, seed: int):
    """The samples of ``shards`` (read with keys) that :func:`is_paired` puts in the paired (or unpaired) part,
    without their key column."""
    from pipelines.data import TASK_CPUS

    def keep(batch: dict) -> dict:
        mask = np.array([is_paired(str(k), paired_fraction, seed) == paired for k in batch["key"]], dtype=bool)
        return {k: v[mask] if len(v) == len(mask) else v for k, v in batch.items() if k != "key"}

    return shards.dataset.map_batches(keep, batch_format="numpy", zero_copy_batch=False, num_cpus=TASK_CPUS)


def _semi_paired_datasets(dataset: str, train_split: str, val_split: str, seed: int, paired_fraction: float) -> dict:
    def part(paired: bool, shuffle_seed: int):
        return _part(read_split(dataset, train_split, seed=shuffle_seed, with_keys=True), paired=paired,
                     paired_fraction=paired_fraction, seed=seed)

    out = {"val": read_split(dataset, val_split).dataset}
    if paired_fraction >= 1:
        return {"train": part(True, seed), **out}
    out.update(train=part(False, seed), train_b=part(False, seed + 1))
    if paired_fraction > 0:
        out["train_pairs"] = part(True, seed + 2)
    return out


def lead_domain(split_domains: dict[str, int]) -> str:
    """The unpaired domain an epoch is one pass over: the larger one (``"a"`` or ``"b"``)."""
    return "b" if split_domains.get("B", 0) > split_domains.get("A", 0) else "a"


def unsplit(data_mode: str, lead: str = "a", *, semi_paired: bool = False) -> list[str]:
    """Datasets every worker reads whole, on its own, as many times as it needs (the cycled streams): splitting
    them would make ranks wait on each other to start each new pass."""
    if semi_paired:
        return ["train_b", "train_pairs"]
    if data_mode == "unpaired":
        return [f"train_{'b' if lead == 'a' else 'a'}"]
    return ["train_ref"] if data_mode == "labeled" else []


def _iterate(shard, config: dict, seed: int, **kw) -> Iterator[dict]:
    return iter(shard.iter_torch_batches(batch_size=config["batch_size"], drop_last=True,
                                         local_shuffle_buffer_size=config["shuffle_buffer"] or None,
                                         local_shuffle_seed=seed, **kw))


def _cycle(make: Callable[[int], Iterator[dict]]) -> Iterator[dict]:
    """Passes over a dataset shard, one after another (a domain smaller than the one leading the epoch)."""
    n = 0
    while True:
        empty = True
        for batch in make(n):
            empty = False
            yield batch
        if empty:
            raise DatasetError("a training dataset shard yielded no full batch: lower train.batch_size or add data")
        n += 1


def train_batches(data_mode: str, dataset: Callable, config: dict, epoch: int, rank: int,
                  gen: torch.Generator) -> Iterator[dict]:
    """Model batches of one epoch on this rank (``dataset(name)`` = the worker's shard of a run dataset)."""
    crop = dict(crop_size=config["crop_size"], flip=config["flip"], generator=gen)
    seed = config["seed"] + epoch * 31 + rank
    if data_mode == "paired" and config.get("paired_fraction") is not None:
        yield from _semi_paired(dataset, config, seed, crop)
    elif data_mode == "paired":
        for raw in _iterate(dataset("train"), config, seed):
            yield to_model_batch(raw, **crop)
    elif data_mode == "single":
        for raw in _iterate(dataset("train"), config, seed):
            yield {"image": to_model_batch(raw, **crop)["image"]}
    elif data_mode == "unpaired":
        lead = config.get("lead_domain", "a")
        other = "b" if lead == "a" else "a"
        others = _cycle(lambda n: _iterate(dataset(f"train_{other}"), config, seed + 7 + n))
        for raw in _iterate(dataset(f"train_{lead}"), config, seed):
            yield {f"real_{lead}": to_model_batch(raw, **crop)["image"],
                   f"real_{other}": to_model_batch(next(others), **crop)["image"]}
    elif data_mode == "labeled":
        yield from _labeled(dataset, config, seed, crop, gen)
    else:
        raise DatasetError(f"no training feed for data mode '{data_mode}'")


def _semi_paired(dataset: Callable, config: dict, seed: int, crop: dict) -> Iterator[dict]:
    fraction = config["paired_fraction"]
    if fraction >= 1:  # every sample a pair
        for raw in _iterate(dataset("train"), config, seed):
            yield to_model_batch(raw, **crop)
        return
    others = _cycle(lambda n: _iterate(dataset("train_b"), config, seed + 7 + n))
    pairs = _cycle(lambda n: _iterate(dataset("train_pairs"), config, seed + 11 + n)) if fraction > 0 else None
    next(others)  # B one batch ahead: even in the A stream's order (no shuffle), no batch holds one sample's A and B
    for raw in _iterate(dataset("train"), config, seed):
        batch = {"real_a": to_model_batch(raw, **crop)["input"],  # A of one unpaired sample, B of another
                 "real_b": to_model_batch(next(others), **crop)["target"]}
        if pairs is not None:
            try:
                batch.update(to_model_batch(next(pairs), **crop))
            except DatasetError:
                raise DatasetError(f"the paired part of the training split (paired_fraction {fraction:g}) holds "
                                   f"fewer than {config['batch_size']} pairs, one batch: raise paired_fraction or "
                                   "lower the batch") from None
        yield batch


def _labeled(dataset: Callable, config: dict, seed: int, crop: dict, gen: torch.Generator) -> Iterator[dict]:
    refs = _cycle(lambda n: _iterate(dataset("train_ref"), config, seed + 13 + n))
    pool: dict[int, deque] = {}

    def feed() -> None:
        b = to_model_batch(next(refs), **crop)
        for x, y in zip(b["image"], b["domain"].tolist()):
            pool.setdefault(y, deque(maxlen=REF_POOL)).append(x)

    for raw in _iterate(dataset("train"), config, seed):
        batch = to_model_batch(raw, **crop)
        feed()
        for _ in range(64):  # until two domains have two references each (a target domain ≠ most sources)
            if sum(len(v) >= 2 for v in pool.values()) >= 2:
                break
            feed()
        ready = sorted(d for d, v in pool.items() if len(v) >= 2)
        if not ready:
            raise DatasetError("labeled data needs at least two training images in some domain for references")
        n = batch["image"].shape[0]
        ref_domain = torch.tensor(ready)[torch.randint(0, len(ready), (n,), generator=gen)]
        ref, ref2 = [], []
        for d in ref_domain.tolist():
            i, j = torch.randperm(len(pool[d]), generator=gen)[:2].tolist()
            ref.append(pool[d][i])
            ref2.append(pool[d][j])
        yield {"image": batch["image"], "domain": batch["domain"], "ref": torch.stack(ref),
               "ref2": torch.stack(ref2), "ref_domain": ref_domain}


def val_batches(data_mode: str, dataset: Callable, config: dict) -> Iterator[dict]:
    """Center-cropped model batches of this rank's share of the val split, in a fixed order."""
    crop = dict(crop_size=config["crop_size"], center=True)
    if data_mode == "unpaired":
        bs = iter(dataset("val_b").iter_torch_batches(batch_size=config["batch_size"]))
        for raw in dataset("val_a").iter_torch_batches(batch_size=config["batch_size"]):
            b = next(bs, None)
            yield {"real_a": to_model_batch(raw, **crop)["image"],
                   **({"real_b": to_model_batch(b, **crop)["image"]} if b is not None else {})}
        return
    for raw in dataset("val").iter_torch_batches(batch_size=config["batch_size"]):
        batch = to_model_batch(raw, **crop)
        yield {"image": batch["image"]} if data_mode == "single" else batch

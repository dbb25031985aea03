"""Batch inference: translate a folder of images or a split of a sharded dataset with a model
(``models:/NAME@champion``, a checkpoint folder, …) on Ray Data, writing PNGs to a folder or object storage.

``read_binary_files`` (a folder) or :func:`pipelines.data.read_split` (shards) → ``map_batches(Translator)`` on
an actor pool (one model per actor, on a GPU when the cluster has them) → every actor writes its PNGs to the
output and returns one row per input (written, or skipped with the reason). A file that is not a readable image
is skipped and listed, never fatal. An alias is resolved to its version once, on the driver, so every actor runs
the same version even if ``@champion`` moves during the job; the summary (also written to
``<output>/_i2i_translate.json``) names it.

Outputs stay inside ``output``: an output name comes from a shard key or a file's path under the input folder, and a
shard is data (a key can be ``../../x`` or ``/etc/x``), so every name is checked (:func:`output_uri`) — relative
'/'-separated parts, none empty, ``.`` or ``..``, no backslash, NUL or control character, bounded length — and, for
a local output, resolved with its symlinks and required to stay under the output folder. A name that fails is
skipped and listed with the reason, never rewritten (two rewritten names could land on one file). Inputs are bounded
before they are decoded: files over ``translate.max_input_bytes`` are skipped unread (their size is known from the
listing), images over ``translate.max_pixels`` are refused on their header; a local input folder's symlinks that
lead outside it are skipped, not followed.

Conditions are what the family's ``translate`` takes: ``direction`` (two-domain families), ``seed`` (style seed
of multimodal families; CoGAN: the latent search's start), ``reference`` (an image file or URI: example /
reference-guided), ``domain`` (StarGAN v2 target), ``steps`` (CoGAN: latent-search steps, ≤ ``MAX_STEPS``; default
the model's ``translate_steps``; the driver's probe runs at most one). With ``seed``, style k of *every* input is
drawn from ``seed + k`` (as MUNIT's test.py draws K styles once and applies each to all inputs), so output
``<name>_s<k>.png`` does not depend on the batch it was in. A condition the model does not take is a
:class:`ConditionError` with the model's own one-line message, raised on the driver before any work is scheduled.

Single-domain families (AE, VAE, GAN, …): translating images is their reconstruction x → z → x' (a family that
does not encode — GAN — refuses it with a :class:`ConditionError`), and :func:`run_sample` (``i2i translate
--sample N``) writes N new images from the prior instead, ``seed_<s>.png`` for s = seed … seed + N − 1, image s
being ``model.sample(1, seed=s)``: the same file for the same seed, whatever N, the batch or the replica.
"""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import re
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from i2i_models.base import I2IModel
from pipelines import cluster, storage, tracking
from pipelines.errors import ConditionError, DatasetError, I2IError, RegistryError, StorageError
from pipelines.importers import IMAGE_EXTS, BadImage, decode_rgb
from pipelines.progress import Progress
from pipelines.register import load_model
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)
SUMMARY_FILE = "_i2i_translate.json"
MAX_SIZE = 4096  # --size: the probe on the driver and every replica hold (batch, channels, size, size) activations
MAX_STYLES = 64  # --num-styles: outputs per input
MAX_SAMPLES = 1_000_000  # --sample: images drawn from a prior in one job
MAX_STEPS = 100_000  # --steps: latent-search iterations per input batch (CoGAN), each a forward + backward of G
MAX_NAME_PART_BYTES = 200  # file systems allow 255 per name; the atomic write's temporary name adds ~14
MAX_NAME_BYTES = 880  # S3 keys are at most 1024 bytes, output prefix and suffix included
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TranslateConfig(StrictModel):
    batch_size: int = Field(default=16, gt=0)  # images per model call
    concurrency: int = Field(default=1, gt=0)  # model replicas (Ray Data actors); at most what fits, see _replicas
    use_gpu: bool | None = None  # None: one GPU per replica when the cluster has GPUs
    cpus_per_worker: float = Field(default=1.0, gt=0)  # per replica; its whole CPUs are its torch threads
    split: str | None = None  # the split read when the input is a sharded dataset; None: val, else test
    max_pixels: int = Field(default=50_000_000, gt=0)  # decompression-bomb guard for input files
    max_input_bytes: int = Field(default=64 * 2**20, gt=0)  # a bigger input file (or reference) is not read
    seed: int = 0  # default style seed of multimodal families (num_styles > 1); seeds test-time noise


@dataclass(frozen=True)
class TranslateResult:
    model: str  # as given
    model_version: str  # the URI every replica loaded (an alias resolved to its version)
    inputs: int
    written: int  # output files
    skipped: list[tuple[str, str]]  # (input name, reason): not an image, truncated, too large, undecodable sample,
    #                                  unsafe output name, symlink out of the input folder
    ignored: int  # files in the input folder that are not images by their extension (never read)
    output: str


def resolve_model_uri(uri: str, mlflow: tracking.MlflowConfig | None) -> str:
    """``models:/NAME@alias`` → ``models:/NAME/VERSION`` (other URIs unchanged)."""
    if not uri.startswith("models:/") or "@" not in uri:
        return uri
    name, alias = uri[len("models:/"):].rsplit("@", 1)
    try:
        version = tracking.client(mlflow or tracking.MlflowConfig()).get_model_version_by_alias(name, alias).version
    except Exception as err:  # noqa: BLE001 - MLflow raises its own exception types for a missing model/alias
        raise RegistryError(f"{uri}: no such registered model or alias ({str(err).splitlines()[0]})") from None
    return f"models:/{name}/{version}"


class UnsafeName(ValueError):
    """An output name that could leave the output folder; its message is the reason listed in the summary."""


def _name_problem(name: str) -> str | None:
    """Why ``name`` (an input's name without extension) cannot name an output, or None."""
    if not name:
        return "empty name"
    if _CONTROL.search(name):
        return "NUL or control character in the name"
    if "\\" in name:
        return "backslash in the name"
    if name.startswith("/"):
        return "absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "empty, '.' or '..' path part"
    if len(name.encode()) > MAX_NAME_BYTES or any(len(p.encode()) > MAX_NAME_PART_BYTES for p in parts):
        return f"over {MAX_NAME_BYTES} bytes, or a part over {MAX_NAME_PART_BYTES}"
    return None


def output_uri(output: str, stem: str, suffix: str = "") -> str:
    """``<output>/<stem><suffix>.png`` for ``stem`` taken from an input's name (a shard key, or a file's path under
    the input folder without its extension), confined to ``output``: a stem that is not plain relative parts (see
    :func:`_name_problem`), or that a local output's symlinks lead elsewhere, is an :class:`UnsafeName`."""
    if problem := _name_problem(stem):
        raise UnsafeName(f"unsafe output name ({problem}): not written")
    target = storage.join(output, f"{stem}{suffix}.png")
    fs, root = storage.resolve(output)
    if fs.type_name == "local":  # resolve-and-check: a symlink inside the output folder must not lead out of it
        root = os.path.realpath(root)
        if os.path.commonpath([root, os.path.realpath(storage.resolve(target)[1])]) != root:
            raise UnsafeName("output path leads out of the output folder (through a symlink): not written")
    return target


def _to_input(im: Image.Image, size: int) -> torch.Tensor:
    """An RGB image → (3, size, size) in [-1, 1] (bicubic resize)."""
    arr = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def _styles(model: I2IModel, x: torch.Tensor, condition: dict[str, Any], num_styles: int) -> list[torch.Tensor]:
    """``num_styles`` translations of the batch ``x``; a condition the model rejects → ConditionError."""
    try:
        if "seed" not in condition:
            return [model.translate(x, **condition)]
        rest, seed = {k: v for k, v in condition.items() if k != "seed"}, int(condition["seed"])
        return [torch.cat([model.translate(x[i:i + 1], seed=seed + k, **rest) for i in range(x.shape[0])])
                for k in range(num_styles)]
    except (TypeError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConditionError(f"{model.name} cannot translate with {sorted(condition) or 'no condition'}: "
                             f"{message}") from err


def _reference(data: bytes, size: int, max_pixels: int) -> torch.Tensor:
    """A reference image file's bytes → (1, 3, size, size); ConditionError when it is not a readable image."""
    try:
        return _to_input(decode_rgb(data, max_pixels=max_pixels), size)[None]
    except BadImage as err:
        raise ConditionError(f"reference image: {err}") from None


def _read_reference(uri: str, max_bytes: int) -> bytes:
    """A reference image file's bytes; a missing file or one over ``max_bytes`` (not read) → ConditionError."""
    fs, path = storage.resolve(uri)
    try:
        with storage.errors("look up", uri):
            size = fs.get_file_info(path).size
        if size is not None and size > max_bytes:
            raise ConditionError(f"reference image {storage.describe(uri)}: {size} bytes > "
                                 f"translate.max_input_bytes={max_bytes}; not read")
        return storage.read_bytes(uri)
    except (OSError, StorageError) as err:
        raise ConditionError(f"reference image {storage.describe(uri)}: {err}") from err


def _png(y: torch.Tensor) -> bytes:
    img = ((y.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


class Translator:
    """The Ray Data UDF: one model per actor; ``__call__`` translates a batch and writes its PNGs to ``output``.

    A batch holds either ``bytes`` + ``name`` (files) or ``image`` + ``name`` (decoded shard samples, uint8 HWC).
    Every output name is checked before the input is decoded (:func:`output_uri`)."""

    def __init__(self, *, model_uri: str, mlflow: tracking.MlflowConfig | None, condition: dict, num_styles: int,
                 size: int | None, output: str, max_pixels: int, reference: bytes | None = None, seed: int = 0,
                 max_bytes: int | None = None):
        self.model = load_model(model_uri, mlflow).eval()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # Ray gives a GPU actor its GPU
        self.model.nets.to(self.device)
        self.size = size or self.model.config.image_size
        self.condition, self.num_styles = dict(condition), num_styles
        self.output, self.max_pixels, self.max_bytes, self.seed = output, max_pixels, max_bytes, seed
        if reference is not None:
            self.condition["reference"] = _reference(reference, self.size, max_pixels).to(self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names, inputs, rows = [str(n) for n in batch["name"]], [], []
        suffixes = [f"_s{k}" if self.num_styles > 1 else "" for k in range(self.num_styles)]
        for i, name in enumerate(names):
            stem = posixpath.splitext(name)[0] if "bytes" in batch else name  # a shard key has no extension
            try:
                targets = [output_uri(self.output, stem, suffix) for suffix in suffixes]
                im = (decode_rgb(bytes(batch["bytes"][i]), max_pixels=self.max_pixels, max_bytes=self.max_bytes)
                      if "bytes" in batch else Image.fromarray(np.asarray(batch["image"][i], dtype=np.uint8)))
            except (UnsafeName, BadImage) as err:
                rows.append((name, 0, str(err)))
                continue
            inputs.append((name, _to_input(im, self.size), targets))
        if inputs:
            # test-time noise (pix2pix's dropout) seeded by the batch's contents: a re-run gives the same pictures
            torch.manual_seed(self.seed + zlib.crc32("\0".join(n for n, _, _ in inputs).encode()))
            x = torch.stack([t for _, t, _ in inputs]).to(self.device)
            outputs = _styles(self.model, x, self.condition, self.num_styles)
            for j, (name, _, targets) in enumerate(inputs):
                for target, out in zip(targets, outputs):
                    storage.write_bytes(target, _png(out[j]))
                rows.append((name, len(outputs), ""))
        return {"name": np.array([r[0] for r in rows], dtype=object),
                "written": np.array([r[1] for r in rows], dtype=np.int64),
                "error": np.array([r[2] for r in rows], dtype=object)}


def _check_condition(model: I2IModel, condition: dict, num_styles: int, seed: int, reference: bytes | None,
                     size: int | None, max_pixels: int) -> dict:
    """The condition every replica will use, checked on one blank image here (fail before scheduling work)."""
    condition = dict(condition)
    if size is not None and not 1 <= size <= MAX_SIZE:  # before the probe allocates size² activations
        raise ConditionError(f"size must be in [1, {MAX_SIZE}], got {size}")
    if not 1 <= num_styles <= MAX_STYLES:
        raise ConditionError(f"num_styles must be in [1, {MAX_STYLES}], got {num_styles}")
    if "steps" in condition and not 0 <= condition["steps"] <= MAX_STEPS:  # before the probe runs them
        raise ConditionError(f"steps must be in [0, {MAX_STEPS}], got {condition['steps']}")
    if num_styles > 1:
        if not model.multimodal:
            raise ConditionError(f"{model.name} is not multimodal: it makes one output per input (num_styles 1)")
        if reference is not None:
            raise ConditionError("a reference gives one style: use a seed for num_styles > 1")
        condition.setdefault("seed", seed)
    if model.data_mode == "single" and not model.encodes:
        raise ConditionError(f"{model.name} does not encode images (it only generates from its prior): it cannot "
                             "translate inputs; draw new images with --sample N [--seed S]")
    native = model.config.image_size
    size = size or native
    probe = {**condition, **({"reference": _reference(reference, size, max_pixels)} if reference is not None else {})}
    if "steps" in probe:  # the probe checks that the model takes the condition and keeps the size, not the search
        probe["steps"] = min(probe["steps"], 1)
    try:
        (out,) = _styles(model.eval(), torch.zeros(1, getattr(model.config, "in_channels", 3), size, size), probe, 1)
    except RuntimeError as err:  # e.g. a U-Net whose skip connections do not line up at this size
        raise ConditionError(f"{model.name} cannot translate {size}×{size} inputs ({str(err).splitlines()[0]}); "
                             f"its image_size is {native}") from None
    if tuple(out.shape[-2:]) != (size, size):
        raise ConditionError(f"{model.name} turns {size}×{size} inputs into {out.shape[-2]}×{out.shape[-1]} "
                             f"outputs: use a size it keeps, e.g. its image_size {native}")
    return condition


@dataclass
class _Inputs:
    dataset: Any  # ray.data.Dataset with ``name`` and ``bytes`` (files) or ``image`` (decoded shard samples); None:
    #               nothing left to read
    count: int
    ignored: int = 0  # non-image files
    shards: Any = None  # the ShardDataset (its undecodable samples are skipped and reported)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # refused from the listing, never read


def _unread(source: str, entries: list, max_bytes: int) -> dict[str, str]:
    """Listed image files that are not read, with the reason: over ``max_bytes`` (the listing knows the size), or
    — a local folder — a symlink leading out of the folder (not followed)."""
    fs, root = storage.resolve(source)
    local = fs.type_name == "local"
    root = os.path.realpath(root) if local else root
    out = {}
    for e in entries:
        if e.size > max_bytes:
            out[e.relpath] = f"file too large: {e.size} bytes > translate.max_input_bytes={max_bytes}; not read"
        elif local and os.path.commonpath([root, os.path.realpath(os.path.join(root, e.relpath))]) != root:
            out[e.relpath] = "symlink leading out of the input folder: not followed"
    return out


def _folder_inputs(source: str, max_bytes: int) -> _Inputs:
    import ray

    from pipelines.data import TASK_CPUS

    entries = storage.list_files(source)
    listed = [f.relpath for f in entries]
    images = [e for e in entries if posixpath.splitext(e.relpath)[1].lower() in IMAGE_EXTS]
    if not images:
        raise DatasetError(f"no image files ({', '.join(sorted(IMAGE_EXTS))}) under {storage.describe(source)}")
    unread = _unread(source, images, max_bytes)
    files = [e.relpath for e in images if e.relpath not in unread]
    by_stem: dict[str, list[str]] = {}
    for f in files:
        by_stem.setdefault(posixpath.splitext(f)[0], []).append(f)
    if clashes := [names for names in by_stem.values() if len(names) > 1]:
        raise DatasetError(f"inputs {' and '.join(clashes[0])} would both be written as "
                           f"{posixpath.splitext(clashes[0][0])[0]}.png ({len(clashes)} such clashes); rename them")
    fs, root = storage.resolve(source)
    strip = len(root.rstrip("/")) + 1
    ds = ray.data.read_binary_files([posixpath.join(root, f) for f in files], filesystem=fs, include_paths=True,
                                    num_cpus=TASK_CPUS).map_batches(
        lambda b: {"name": np.array([p[strip:] for p in b["path"]], dtype=object), "bytes": b["bytes"]},
        batch_format="numpy", zero_copy_batch=False, num_cpus=TASK_CPUS) if files else None
    return _Inputs(ds, len(files), ignored=len(listed) - len(images), skipped=sorted(unread.items()))


def _shard_inputs(manifest: str, split: str | None, direction: str | None) -> _Inputs:
    """The split's images (paired: the inputs, or the targets for b2a; two-domain: domain A, or B for b2a;
    labeled: all), named by key."""
    from pipelines.data import TASK_CPUS, read_split
    from pipelines.manifest import read_manifest

    m = read_manifest(manifest)
    split = split or next((s for s in ("val", "test") if s in m.splits), "val")
    if split not in m.splits:
        raise DatasetError(f"dataset '{m.dataset}' has no split '{split}'; it has: {', '.join(m.splits)}")
    domain = (m.domains[1] if direction == "b2a" else m.domains[0]) if m.data_mode == "unpaired" else None
    shards = read_split(manifest, split, domain=domain, with_keys=True)
    column = ("target" if direction == "b2a" else "input") if m.data_mode == "paired" else "image"
    ds = shards.dataset.map_batches(lambda b: {"name": b["key"], "image": b[column]}, batch_format="numpy",
                                    zero_copy_batch=False, num_cpus=TASK_CPUS)
    count = m.splits[split].domains.get(domain, 0) if domain else m.splits[split].samples
    return _Inputs(ds, count, shards=shards)


def _replicas(cfg: TranslateConfig, use_gpu: bool) -> int:
    """How many replicas run: ``cfg.concurrency``, lowered to what fits the cluster's CPUs (GPUs) next to Ray
    Data's read tasks — replicas holding every CPU starve the reads that feed them, and the job hangs. A cluster
    that has no CPUs (GPUs) yet is left to its autoscaler."""
    import ray

    from pipelines.data import TASK_CPUS

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if cpus == 0 or (use_gpu and gpus == 0):
        return cfg.concurrency
    fits = int((cpus - TASK_CPUS) // cfg.cpus_per_worker)
    if use_gpu:
        fits = min(fits, int(gpus))
    if fits < 1:
        raise I2IError(f"one translate replica needs {cfg.cpus_per_worker:g} CPU, and Ray Data's readers "
                       f"{TASK_CPUS:g} more, but the cluster has {cpus:g} CPU: lower translate.cpus_per_worker")
    if cfg.concurrency > fits:
        log.warning("translate.concurrency=%d replicas × %g CPU do not fit next to Ray Data's readers on %g CPU%s: "
                    "running %d", cfg.concurrency, cfg.cpus_per_worker, cpus, f" / {gpus:g} GPU" if use_gpu else "",
                    fits)
    return min(cfg.concurrency, fits)


def _collect(rows, total: int) -> list[dict]:
    """Every result row of the translation as it streams in, with a progress line per tenth of the inputs."""
    if rows is None:
        return []
    progress, out = Progress("translate", total, "images", logger=log), []
    for row in rows.iter_rows():
        out.append(row)
        progress.update()
    return out


def run_translate(model_uri: str, source: str, output: str, *, condition: dict[str, Any] | None = None,
                  num_styles: int = 1, size: int | None = None, cfg: TranslateConfig | None = None,
                  mlflow: tracking.MlflowConfig | None = None, ray_config=None) -> TranslateResult:
    """Translate every image of ``source`` (a folder, local or ``s3://…``, or a sharded dataset's split) into
    ``output`` as ``<name>.png`` (``<name>_s<k>.png`` for k < ``num_styles`` > 1), on Ray Data.
    ``size``: the square size inputs are resized to (default: the model's ``image_size``; only fully
    convolutional families — CycleGAN, UNIT, MUNIT — take other sizes)."""
    import ray

    from pipelines.manifest import manifest_uri

    cfg = cfg or TranslateConfig()
    mlflow = mlflow or tracking.MlflowConfig()
    mlflow = mlflow.model_copy(update={"tracking_uri": mlflow.uri()})  # the actors' working directory differs
    source, output = storage.absolute(source), storage.absolute(output)
    condition = dict(condition or {})
    reference = condition.pop("reference", None)
    if isinstance(reference, str):
        reference = _read_reference(storage.absolute(reference), cfg.max_input_bytes)
    resolved = resolve_model_uri(model_uri, mlflow)
    condition = _check_condition(load_model(resolved, mlflow), condition, num_styles, cfg.seed, reference, size,
                                 cfg.max_pixels)  # the replicas decode the reference bytes themselves

    cluster.init_ray(ray_config)
    use_gpu = cluster.use_gpu(cfg.use_gpu)
    manifest = source if source.endswith(".json") else manifest_uri(source)
    inputs = (_shard_inputs(manifest, cfg.split, condition.get("direction")) if storage.exists(manifest)
              else _folder_inputs(source, cfg.max_input_bytes))
    replicas = _replicas(cfg, use_gpu)
    log.info("translating %d inputs of %s with %s (%d replicas) -> %s", inputs.count, source, resolved, replicas,
             output)
    rows = inputs.dataset.map_batches(
        Translator, batch_size=cfg.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=replicas),
        num_cpus=cfg.cpus_per_worker, num_gpus=1 if use_gpu else None,
        fn_constructor_kwargs={"model_uri": resolved, "mlflow": mlflow, "condition": condition,
                               "num_styles": num_styles, "size": size, "output": output,
                               "max_pixels": cfg.max_pixels, "max_bytes": cfg.max_input_bytes,
                               "reference": reference, "seed": cfg.seed},
    ).select_columns(["name", "written", "error"]) if inputs.dataset is not None else None
    rows = _collect(rows, inputs.count)
    # samples of a shard that did not decode never reached a replica: read_split skipped and recorded them; files
    # refused from the listing were never read
    undecoded = [(f"{url}:{key}", reason) for url, key, reason in inputs.shards.skipped()] if inputs.shards else []
    skipped = sorted((r["name"], r["error"]) for r in rows if r["error"]) + undecoded + inputs.skipped
    for name, reason in skipped:
        log.warning("skipped %r: %s", name, reason)  # repr: a crafted name cannot forge log lines
    result = TranslateResult(model=model_uri, model_version=resolved,
                             inputs=len(rows) + len(undecoded) + len(inputs.skipped),
                             written=int(sum(r["written"] for r in rows)), skipped=skipped, ignored=inputs.ignored,
                             output=output)
    storage.write_bytes(storage.join(output, SUMMARY_FILE), json.dumps(asdict(result), indent=1).encode())
    return result


class Sampler:
    """The Ray Data UDF of :func:`run_sample`: one model per actor; ``__call__`` draws the images of a batch of seeds
    (``model.sample(1, seed=s)`` each) and writes ``seed_<s>.png``."""

    def __init__(self, *, model_uri: str, mlflow: tracking.MlflowConfig | None, output: str):
        self.model = load_model(model_uri, mlflow).eval()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.nets.to(self.device)
        self.output = output

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seeds = [int(s) for s in batch["seed"]]
        for s in seeds:
            storage.write_bytes(output_uri(self.output, f"seed_{s}"),
                                _png(self.model.sample(1, seed=s, device=self.device)[0]))
        return {"name": np.array([f"seed_{s}" for s in seeds], dtype=object),
                "written": np.ones(len(seeds), dtype=np.int64), "error": np.array([""] * len(seeds), dtype=object)}


def run_sample(model_uri: str, output: str, *, n: int, seed: int = 0, cfg: TranslateConfig | None = None,
               mlflow: tracking.MlflowConfig | None = None, ray_config=None) -> TranslateResult:
    """``n`` new images from the prior of a single-domain model (``models:/NAME@champion``, a checkpoint folder, …)
    into ``output`` as ``seed_<s>.png``, s = ``seed`` … ``seed + n − 1``, on Ray Data replicas
    (``translate.concurrency``, ``translate.batch_size`` seeds per call)."""
    import ray

    cfg = cfg or TranslateConfig()
    if not 1 <= n <= MAX_SAMPLES:
        raise ConditionError(f"--sample must be in [1, {MAX_SAMPLES}], got {n}")
    mlflow = mlflow or tracking.MlflowConfig()
    mlflow = mlflow.model_copy(update={"tracking_uri": mlflow.uri()})
    output = storage.absolute(output)
    resolved = resolve_model_uri(model_uri, mlflow)
    model = load_model(resolved, mlflow)
    try:
        model.sample(1, seed=seed)  # on the driver: a model without a prior fails here, before any work
    except NotImplementedError as err:
        raise ConditionError(f"{model.name} cannot sample ({err}): --sample is for single-domain families "
                             "(ae, vae, gan, …)") from None
    cluster.init_ray(ray_config)
    use_gpu = cluster.use_gpu(cfg.use_gpu)
    replicas = _replicas(cfg, use_gpu)
    log.info("sampling %d images (seeds %d…%d) from %s (%d replicas) -> %s", n, seed, seed + n - 1, resolved,
             replicas, output)
    seeds = ray.data.range(n, override_num_blocks=max(1, min(replicas * 2, n))).map_batches(
        lambda b: {"seed": b["id"] + seed}, batch_format="numpy")
    rows = seeds.map_batches(
        Sampler, batch_size=cfg.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=replicas),
        num_cpus=cfg.cpus_per_worker, num_gpus=1 if use_gpu else None,
        fn_constructor_kwargs={"model_uri": resolved, "mlflow": mlflow, "output": output},
    ).take_all()
    result = TranslateResult(model=model_uri, model_version=resolved, inputs=0,
                             written=int(sum(r["written"] for r in rows)), skipped=[], ignored=0, output=output)
    storage.write_bytes(storage.join(output, SUMMARY_FILE), json.dumps(asdict(result), indent=1).encode())
    return result

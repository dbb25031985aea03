"""Evaluate a generator on the val (or test) shards, per data mode (the math lives in ``metrics``):

* **paired** (pix2pix): L1 / PSNR / SSIM of the translation vs the target, FID / KID of translations vs targets.
* **unpaired** (CycleGAN, UNIT, MUNIT): the split's domain-A images are translated a→b, FID / KID vs the split's
  real B images (``fid``, ``kid``), and b→a vs real A (``fid_ba``, ``kid_ba``; not for a one-way family: DTN).
  With ``ground_truth`` naming a known A→B transform (the demo's ``winter``), also L1 / PSNR / SSIM of fake_b vs
  transform(real_a).
  Multimodal families also get ``lpips_diversity`` (mean pairwise LPIPS over ``num_styles`` seeded styles per
  input, a→b) and, with a ``domain_classifier``, MUNIT's conditional Inception Score ``cis`` and ``is``.
* **labeled** (StarGAN v2): every image into every other domain. Latent-guided FID / KID per target domain vs its
  real eval images, averaged over targets (``fid``, ``kid``; ``fid_<domain>`` each); reference-guided
  (``fid_ref``, ``kid_ref``; references are real eval images of the target domain); ``lpips_diversity`` as above.
* **single** (AE, VAE, GAN, …): FID / KID of samples from the prior (``sample``: as many as the split has real
  images, batch i drawn from a seed fixed by (``seed``, i)) vs the split's real images of the family's domain
  (``domain``: an ``images`` dataset's one domain, or the one ``train.domain`` named); for families that encode,
  ``mse`` / ``psnr`` of the reconstructions x → z → x' of those images.

FID/KID use a pluggable feature network (``metrics.feature_net``): the standard Inception weights from a configured
path or the ``$TORCH_HOME`` cache (never downloaded at run time; a clear error names the file), or the seeded
``tiny`` net for tests and offline smoke runs; LPIPS likewise (``lpips_backbone``). Translations are seeded (style k
of every input uses ``seed * 1000 + k``; FID/KID use style 0), so two models evaluated with the same config see the
same noise and the same images (the promotion gate compares them on equal terms).

Every result carries an **evaluation fingerprint**: a short hash of what its numbers depend on — the data (dataset
id, split) and each setting that changes a number for this model (seed; the FID/KID feature net and the sha256 of
its weights file, ``kid_subset_size``; ``ground_truth``; for multimodal families ``num_styles``, the LPIPS backbone
and its weights' sha256; the domain classifier's sha256; ``batch_size`` where it changes numbers: multimodal styles
are drawn per batch, reference-guided references are the first batch, single-domain samples are drawn per batch;
the ``domain`` a single-domain family is measured on). Two scores are comparable only when their
fingerprints are equal. ``fingerprint_spec`` is the readable form (the ``eval.fingerprint_json`` tag) and
``config_from_spec`` turns it back into an ``EvaluateConfig``. ``FINGERPRINT_VERSION`` changes when the metric code
does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from i2i_models.base import I2IModel
from pipelines import metrics, storage, tracking
from pipelines.data import ShardDataset, to_model_batch
from pipelines.data import read_split as _read_split
from pipelines.feeds import single_domain
from pipelines.manifest import read_manifest
from pipelines.progress import STDOUT, Progress
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)
LOWER_IS_BETTER = {"l1": True, "mse": True, "psnr": False, "ssim": False, "fid": True, "kid": True, "fid_ba": True,
                   "kid_ba": True, "fid_ref": True, "kid_ref": True, "lpips_diversity": False, "is": False,
                   "cis": False}


def lower_is_better(metric: str) -> bool:
    """Direction of ``metric``, including the per-domain ``fid_<domain>`` / ``kid_<domain>`` keys."""
    if metric in LOWER_IS_BETTER:
        return LOWER_IS_BETTER[metric]
    if metric.startswith(("fid_", "kid_")):
        return True
    raise KeyError(f"unknown metric '{metric}'; valid: {', '.join(LOWER_IS_BETTER)}, fid_<domain>, kid_<domain>")


def _demo_winter(x: torch.Tensor) -> torch.Tensor:
    """``demo_data.winter`` on model images (N, 3, H, W) in [-1, 1], through uint8 as the demo data was made."""
    from pipelines.demo_data import winter

    u8 = ((x.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.stack([winter(t) for t in u8])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(x.device)


GROUND_TRUTH: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"demo_winter": _demo_winter}


class EvaluateConfig(StrictModel):
    dataset: str | None = None  # shards to evaluate on; None: the training dataset
    split: str | None = None  # None: "val", else "test"
    batch_size: int = Field(default=16, gt=0)
    fid: bool = True  # also FID and KID
    feature_net: Literal["inception", "tiny"] = "inception"
    inception_weights: str | None = None  # path to weights-inception-2015-12-05-6726825d.pth
    kid_subset_size: int = Field(default=1000, gt=1)
    seed: int = 0
    ground_truth: str | None = None  # unpaired data: a known A→B transform (GROUND_TRUTH) → L1/PSNR/SSIM too
    num_styles: int = Field(default=10, ge=2)  # multimodal families: outputs per input for LPIPS diversity / CIS
    lpips_backbone: Literal["alex", "tiny"] = "alex"
    lpips_weights: str | None = None  # path to alexnet-owt-7be5be79.pth; None: the $TORCH_HOME cache
    domain_classifier: str | None = None  # TorchScript: images in [-1, 1] → class logits; None: no CIS / IS
    domain: str | None = None  # single-domain families: the domain of a two-domain dataset (default: train.domain)
    # where it runs (never changes a number, so not in the fingerprint): Ray tasks over the split's batches
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    gpu: bool | None = None  # one GPU per worker; None: when the cluster has GPUs

    @field_validator("ground_truth")
    @classmethod
    def _known_ground_truth(cls, v: str | None) -> str | None:
        if v is not None and v not in GROUND_TRUTH:
            raise ValueError(f"unknown ground truth '{v}'; valid: {', '.join(GROUND_TRUTH)}")
        return v


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    dataset: str
    dataset_id: str
    split: str
    samples: int
    fingerprint: str = ""  # "" in results written before fingerprints existed: comparable with nothing
    fingerprint_spec: dict = field(default_factory=dict)


FINGERPRINT_VERSION = 2  # 2: KID subsets drawn from a seeded, order-free sample; noise seeded per batch


def fingerprint_spec(cfg: EvaluateConfig, dataset_id: str, split: str, model: I2IModel) -> dict:
    """What ``cfg`` measures ``model`` with on one split, as data: every entry that can change a number (None where
    the model's evaluation does not use it). Hashes the weights files it names (cached)."""
    multimodal, mode = model.multimodal, model.data_mode
    return {
        "v": FINGERPRINT_VERSION, "dataset_id": dataset_id, "split": split, "seed": cfg.seed,
        "feature_net": cfg.feature_net if cfg.fid else None,
        "feature_net_id": metrics.feature_net_identity(cfg.feature_net, cfg.inception_weights) if cfg.fid else None,
        "kid_subset_size": cfg.kid_subset_size if cfg.fid else None,
        "ground_truth": cfg.ground_truth if mode == "unpaired" else None,
        "num_styles": cfg.num_styles if multimodal else None,
        "lpips_backbone": cfg.lpips_backbone if multimodal else None,
        "lpips_id": metrics.lpips_identity(cfg.lpips_backbone, cfg.lpips_weights) if multimodal else None,
        "domain_classifier_id": (f"sha256={metrics.file_sha256(cfg.domain_classifier)}"
                                 if cfg.domain_classifier and mode == "unpaired" else None),
        "batch_size": cfg.batch_size if multimodal or mode == "labeled" else None,
        # only for single-domain families (other families' fingerprints stay what they were)
        **({"domain": cfg.domain, "batch_size": cfg.batch_size} if mode == "single" else {}),
    }


def fingerprint_of(spec: dict) -> str:
    """The short stable hash of a fingerprint spec (canonical JSON)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def config_from_spec(spec: dict, base: EvaluateConfig) -> EvaluateConfig:
    """The ``EvaluateConfig`` a fingerprint spec was measured with; where the weights files are comes from
    ``base`` (their identities are in the spec: a different file gives a different fingerprint)."""
    if spec.get("v") != FINGERPRINT_VERSION:
        raise ValueError(f"evaluation fingerprint version {spec.get('v')!r} is not {FINGERPRINT_VERSION}: "
                         "it was measured by other metric code")
    update = {"split": spec["split"], "seed": spec["seed"], "fid": spec["feature_net"] is not None,
              "ground_truth": spec["ground_truth"]}
    update.update({k: spec[k] for k in ("feature_net", "kid_subset_size", "num_styles", "lpips_backbone",
                                        "batch_size") if spec.get(k) is not None})
    if spec.get("domain_classifier_id") is None:
        update["domain_classifier"] = None
    update["domain"] = spec.get("domain")
    return EvaluateConfig(**{**base.model_dump(), **update})


def eval_tags(result: EvalResult) -> dict[str, str]:
    """The ``eval.*`` tags a registered version carries: every metric, what it was measured on, and the evaluation
    fingerprint (``eval.fingerprint`` and its readable ``eval.fingerprint_json``) when the result has one."""
    tags = {f"eval.{k}": repr(v) for k, v in result.metrics.items()}
    tags.update({"eval.dataset": storage.strip_credentials(result.dataset), "eval.dataset_id": result.dataset_id,
                 "eval.split": result.split})  # the gate re-evaluates a champion on it: usable, no credentials
    if result.fingerprint:
        tags.update({"eval.fingerprint": result.fingerprint,
                     "eval.fingerprint_json": json.dumps(result.fingerprint_spec, sort_keys=True)})
    return tags


def pick_split(dataset: str, split: str | None) -> str:
    m = read_manifest(dataset)
    if split:
        return split
    for s in ("val", "test"):
        if s in m.splits:
            return s
    raise ValueError(f"dataset '{m.dataset}' has neither a val nor a test split; set evaluate.split")


class _Tools:
    """What one evaluation worker measures with, built once per worker: ONE feature net shared by every FID/KID
    distribution, LPIPS, the domain classifier; the worker's share of the batches."""

    def __init__(self, model: I2IModel, cfg: EvaluateConfig, part: int = 0, parts: int = 1,
                 device: torch.device = torch.device("cpu")):
        self.cfg, self.size, self.part, self.parts, self.device = cfg, model.config.image_size, part, parts, device
        self.features = metrics.feature_net(cfg.feature_net, cfg.inception_weights).to(device) if cfg.fid else None
        self.lpips = metrics.lpips_net(cfg.lpips_backbone, cfg.lpips_weights).to(device) if model.multimodal else None
        self.classifier = metrics.domain_classifier(cfg.domain_classifier) if cfg.domain_classifier else None

    def dist(self) -> metrics.Distribution | None:
        c = self.cfg
        return (metrics.Distribution(kid_subset_size=c.kid_subset_size, seed=c.seed, net=self.features,
                                     device=self.device) if c.fid else None)

    def batches(self, data: ShardDataset, stream: int, *, every: bool = False):
        """This worker's batches of ``data``: batch i of the split's (fixed-order) stream goes to worker
        i mod parts, and the global RNG is reseeded from (seed, stream, i) before it is handed out, so a batch is
        the same batch, translated with the same noise, whatever the number of workers (``every``: all batches)."""
        progress = None
        if stream == 0 and not every:  # the worker's pass over the split (reference streams are not counted)
            entry = data.manifest.splits[data.split]
            total = entry.domains.get(data.domain, 0) if data.domain else entry.samples
            bs = self.cfg.batch_size  # batch i (of bs images; the last one fewer) is worker i mod parts's
            mine = sum(min(bs, total - i * bs) for i in range(self.part, -(-total // bs), self.parts))
            progress = Progress(f"evaluate (worker {self.part + 1}/{self.parts})", mine, "images", logger=STDOUT)
        for i, raw in enumerate(data.dataset.iter_torch_batches(batch_size=self.cfg.batch_size)):
            if every or i % self.parts == self.part:
                torch.manual_seed(self.cfg.seed * 1_000_003 + stream * 100_003 + i)
                batch = to_model_batch(raw, crop_size=self.size, center=True)
                yield {k: v.to(self.device) for k, v in batch.items()}
                if progress:
                    progress.update(next(iter(batch.values())).shape[0])


def _outputs(model: I2IModel, x: torch.Tensor, cfg: EvaluateConfig, **condition) -> torch.Tensor:
    """(K, N, C, H, W): K = num_styles seeded styles for multimodal families, else the one translation."""
    if not model.multimodal:
        return model.translate(x, **condition)[None]
    return torch.stack([model.translate(x, seed=cfg.seed * 1000 + k, **condition) for k in range(cfg.num_styles)])


def _state(dist: metrics.Distribution | None) -> dict | None:
    return dist.state() if dist is not None else None


# --- per worker: this worker's share of the batches → statistics (sums, feature statistics, class probabilities) --
def _part_paired(model: I2IModel, data: list[ShardDataset], tools: _Tools) -> dict:
    dist, sums = tools.dist(), torch.zeros(4, dtype=torch.float64)
    for batch in tools.batches(data[0], 0):
        fake = model.translate(batch["input"])
        sums += metrics.paired_sums(fake, batch["target"]).double().cpu()
        if dist:
            dist.update(batch["target"], real=True)
            dist.update(fake, real=False)
    return {"n": int(sums[3]), "paired": sums, "dist": {"": _state(dist)}}


def _part_unpaired(model: I2IModel, data: list[ShardDataset], tools: _Tools) -> dict:
    cfg = tools.cfg
    dist_ab, truth = tools.dist(), GROUND_TRUTH.get(cfg.ground_truth or "")
    dist_ba = tools.dist() if "b2a" in model.directions else None  # a one-way family (DTN) has no b→a
    paired, diversity, probs, n = torch.zeros(4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), [], 0
    for batch in tools.batches(data[0], 0):
        real_a = batch["image"]
        n += real_a.shape[0]
        fakes_b = _outputs(model, real_a, cfg, direction="a2b")  # (K, N, C, H, W); style 0 for FID
        if truth:
            paired += metrics.paired_sums(fakes_b[0], truth(real_a)).double().cpu()
        if tools.lpips:
            diversity += metrics.diversity_sums(tools.lpips, fakes_b).double()
        if tools.classifier:
            logits = tools.classifier(fakes_b.flatten(0, 1).cpu()).float()
            probs.append(logits.softmax(-1).view(fakes_b.shape[0], real_a.shape[0], -1).transpose(0, 1))
        if dist_ab:
            dist_ab.update(fakes_b[0], real=False)
        if dist_ba:
            dist_ba.update(real_a, real=True)
    for batch in tools.batches(data[1], 1):
        real_b = batch["image"]
        if dist_ab:
            dist_ab.update(real_b, real=True)
        if dist_ba:
            dist_ba.update(_outputs(model, real_b, cfg, direction="b2a")[0], real=False)
    return {"n": n, "paired": paired, "diversity": diversity, "probs": probs,
            "dist": {"": _state(dist_ab), "_ba": _state(dist_ba)}}


def _reference_pool(data: ShardDataset, tools: _Tools) -> torch.Tensor:
    """Up to ``batch_size`` real eval images of one domain: its first batch (the references of reference-guided
    translation; every worker reads the same one)."""
    pool = next(tools.batches(data, 0, every=True), None)
    if pool is None or pool["image"].shape[0] < 2:
        raise ValueError(f"split '{data.split}' needs at least 2 images of domain '{data.domain}' for FID")
    return pool["image"]


def _part_labeled(model: I2IModel, data: list[ShardDataset], tools: _Tools) -> dict:
    cfg, domains = tools.cfg, len(data) - 1
    refs = [_reference_pool(d, tools) for d in data[1:]] if cfg.fid else []
    latent, reference = [tools.dist() for _ in range(domains)], [tools.dist() for _ in range(domains)]
    diversity, n = torch.zeros(2, dtype=torch.float64), 0
    for batch in tools.batches(data[0], 0):
        x, y = batch["image"], batch["domain"]
        n += x.shape[0]
        for t in range(domains):
            src = x[y != t]
            if cfg.fid:
                latent[t].update(x[y == t], real=True)
                reference[t].update(x[y == t], real=True)
            if src.shape[0] == 0:
                continue
            fakes = _outputs(model, src, cfg, domain=t)
            if tools.lpips:
                diversity += metrics.diversity_sums(tools.lpips, fakes).double()
            if cfg.fid:
                latent[t].update(fakes[0], real=False)
                pool = refs[t][torch.arange(src.shape[0], device=src.device) % refs[t].shape[0]]
                reference[t].update(model.translate(src, domain=t, reference=pool), real=False)
    return {"n": n, "diversity": diversity,
            "dist": {**{f"latent{t}": _state(d) for t, d in enumerate(latent)},
                     **{f"reference{t}": _state(d) for t, d in enumerate(reference)}}}


def _part_single(model: I2IModel, data: list[ShardDataset], tools: _Tools) -> dict:
    """As many samples as real images, batch by batch (the sample seed drawn from the batch's seeded RNG, so a batch
    gets the same samples whatever the number of workers); reconstructions where the family encodes."""
    dist, recon, n = tools.dist(), torch.zeros(3, dtype=torch.float64), 0
    for batch in tools.batches(data[0], 0):
        real = batch["image"]
        n += real.shape[0]
        if model.encodes:
            recon += metrics.recon_sums(model.translate(real), real).cpu()
        if dist:
            seed = int(torch.randint(0, 2**62, ()))
            dist.update(real, real=True)
            dist.update(model.sample(real.shape[0], seed=seed, device=real.device), real=False)
    return {"n": n, "recon": recon, "dist": {"": _state(dist)}}


PARTS = {"paired": _part_paired, "unpaired": _part_unpaired, "labeled": _part_labeled, "single": _part_single}


@torch.no_grad()
def _eval_part(model: I2IModel, mode: str, data: list[ShardDataset], cfg: EvaluateConfig, part: int, parts: int,
               cpus: float) -> dict:
    """One evaluation worker (a Ray task): its share of the batches, back as statistics only."""
    torch.set_num_threads(max(1, round(cpus)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    return PARTS[mode](model, data, _Tools(model, cfg, part, parts, device))


# --- on the driver: the workers' statistics → metrics -------------------------------------------------------------
def _merge(parts: list[dict]) -> dict:
    """Sums added, class probabilities concatenated, feature statistics merged (``metrics.Distribution``)."""
    out: dict = {}
    for p in parts:
        for k, v in p.items():
            if k == "dist":
                for name, state in v.items():
                    out.setdefault("dist", {}).setdefault(name, []).append(state)
            elif k == "probs":
                out.setdefault(k, []).extend(v)
            else:
                out[k] = out[k] + v if k in out else v
    return out


def _distribution(states: list[dict | None], cfg: EvaluateConfig, suffix: str = "") -> dict[str, float]:
    if states[0] is None:
        return {}
    dist = metrics.Distribution.from_states(states, kid_subset_size=cfg.kid_subset_size, seed=cfg.seed)
    if dist.n_fake < 2 or dist.n_real < 2:
        return {}
    return {f"{k}{suffix}": v for k, v in dist.compute().items()}


def _finish(model: I2IModel, acc: dict, cfg: EvaluateConfig, domains: list[str]) -> dict[str, float]:
    mode, result = model.data_mode, {}
    if mode == "single" and model.encodes:
        result.update(metrics.recon_means(acc["recon"]))
    if mode in ("paired", "unpaired", "single"):
        result.update({**_distribution(acc["dist"][""], cfg)})
    if mode == "unpaired":
        result.update(_distribution(acc["dist"]["_ba"], cfg, "_ba"))
    if mode == "paired" or (mode == "unpaired" and cfg.ground_truth):
        result.update(metrics.paired_means(acc["paired"]))
    if mode == "labeled":
        per_target = [_distribution(acc["dist"][f"latent{t}"], cfg) for t in range(len(domains))]
        per_target_ref = [_distribution(acc["dist"][f"reference{t}"], cfg) for t in range(len(domains))]
        for key in ("fid", "kid"):
            if all(key in m for m in per_target):
                result[key] = float(np.mean([m[key] for m in per_target]))
                result[f"{key}_ref"] = float(np.mean([m[key] for m in per_target_ref]))
        result.update({f"fid_{d}": m["fid"] for d, m in zip(domains, per_target) if "fid" in m})
    if model.multimodal and acc["diversity"][1] > 0:
        result["lpips_diversity"] = float(acc["diversity"][0] / acc["diversity"][1])
    if acc.get("probs"):
        result.update(metrics.inception_scores(torch.cat(acc["probs"])))
    return result


def _read(model: I2IModel, dataset: str, split: str, cfg: EvaluateConfig) -> tuple[list[ShardDataset], list[str]]:
    """The (lazy) datasets a data mode's evaluation reads, and the dataset's domains. They are read inside the
    evaluation tasks, whose CPUs cover their reads: read tasks ask for none (else evaluation tasks holding every CPU
    would wait for reads that wait for a CPU)."""
    manifest = read_manifest(dataset)
    names = manifest.domains
    read_split = functools.partial(_read_split, task_cpus=0)
    if model.data_mode == "single":
        domain = single_domain(manifest, cfg.domain, f"model '{model.name}'")
        return [read_split(dataset, split, domain=domain)], [domain]
    if model.data_mode == "paired":
        return [read_split(dataset, split)], names
    if model.data_mode == "unpaired":
        return [read_split(dataset, split, domain=d) for d in names[:2]], names
    if getattr(model.config, "num_domains", len(names)) != len(names):
        raise ValueError(f"the model has {model.config.num_domains} domains, the dataset {len(names)}: {names}")
    refs = [read_split(dataset, split, domain=d) for d in names] if cfg.fid else []
    return [read_split(dataset, split), *refs], names


@torch.no_grad()
def evaluate_model(model: I2IModel, dataset: str, cfg: EvaluateConfig) -> EvalResult:
    """Metrics of ``model`` on one split, by the model's data mode (see the module docstring), measured by
    ``cfg.workers`` Ray tasks (each with ``cpus_per_worker`` CPUs and a GPU when ``gpu`` says so) over the split's
    batches; this process only merges their statistics."""
    import ray

    if model.data_mode not in PARTS:
        raise ValueError(f"no evaluation for data mode '{model.data_mode}'; supported: {', '.join(PARTS)}")
    split = pick_split(dataset, cfg.split)
    data, domains = _read(model, dataset, split, cfg)
    gpu = cfg.gpu if cfg.gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    if model.multimodal and model.data_mode == "unpaired" and not cfg.domain_classifier:
        log.info("evaluate.domain_classifier is not set: conditional IS / IS are not computed")
    task = ray.remote(_eval_part).options(num_cpus=cfg.cpus_per_worker, num_gpus=1 if gpu else 0)
    model_ref = ray.put(model)
    refs = [task.remote(model_ref, model.data_mode, data, cfg, i, cfg.workers, cfg.cpus_per_worker)
            for i in range(cfg.workers)]
    try:
        acc = _merge(ray.get(refs))
    except BaseException:  # no evaluation task outlives the evaluation that started it
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    n = int(acc["n"])
    if n == 0:
        raise ValueError(f"split '{split}' of {dataset} yielded no samples")
    if skipped := [s for d in data for s in d.skipped()]:
        log.warning("%d samples skipped while evaluating (undecodable), e.g. %s", len(skipped), skipped[0])
    spec = fingerprint_spec(cfg, data[0].manifest.id, split, model)
    return EvalResult(metrics=_finish(model, acc, cfg, domains), dataset=storage.absolute(dataset),
                      dataset_id=data[0].manifest.id, split=split, samples=n, fingerprint=fingerprint_of(spec),
                      fingerprint_spec=spec)


def run_evaluate(*, model_uri: str, dataset: str, cfg: EvaluateConfig, mlflow: tracking.MlflowConfig,
                 mlflow_run_id: str | None = None, output: str | None = None) -> EvalResult:
    """Evaluate the model at ``model_uri`` (a checkpoint folder or ``models:/…``), write JSON, log to MLflow."""
    from pipelines.register import load_model

    result = evaluate_model(load_model(model_uri, mlflow), cfg.dataset or dataset, cfg)
    log.info("evaluated %s on %s/%s (%d images): %s", model_uri, result.dataset, result.split, result.samples,
             result.metrics)
    if output:
        storage.write_bytes(output, json.dumps({"model": storage.redact(model_uri), **asdict(result),
                                                "dataset": storage.strip_credentials(result.dataset)}, indent=1).encode())
    if mlflow_run_id:
        c = tracking.client(mlflow)
        for k, v in result.metrics.items():
            c.log_metric(mlflow_run_id, f"eval_{k}", v)
        c.set_tag(mlflow_run_id, "eval.dataset_id", result.dataset_id)
        c.set_tag(mlflow_run_id, "eval.split", result.split)
        c.set_tag(mlflow_run_id, "eval.fingerprint", result.fingerprint)
    return result

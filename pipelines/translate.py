"""Translate a folder of images with a model (``models:/NAME@champion``, a checkpoint folder, …), optionally
under a condition the family's ``translate`` takes: ``direction`` (two-domain families), ``seed`` (style seed of
multimodal families), ``reference`` (an image file: example / reference-guided), ``domain`` (StarGAN v2 target).

With ``seed``, style k of *every* input is drawn from ``seed + k`` (as MUNIT's test.py draws K styles once and
applies each to all inputs), so output ``<name>_s<k>.png`` does not depend on the batch it was in. A condition the
model does not take is a :class:`ConditionError` carrying the model's own one-line message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from i2i_models.base import I2IModel
from pipelines import tracking
from pipelines.errors import ConditionError
from pipelines.importers import IMAGE_EXTS, BadImage, decode_rgb
from pipelines.register import load_model



@dataclass(frozen=True)
class TranslateResult:
    model: str
    written: int
    skipped: list[tuple[str, str]]
    out_dir: str


def _load_image(path: str, size: int, max_pixels: int) -> torch.Tensor:
    """An image file → (3, size, size) in [-1, 1] (bicubic resize); raises BadImage."""
    with open(path, "rb") as f:
        im = decode_rgb(f.read(), max_pixels=max_pixels)
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


def translate_folder(model_uri: str, in_dir: str, out_dir: str, *, condition: dict[str, Any] | None = None,
                     num_styles: int = 1, mlflow: tracking.MlflowConfig | None = None, batch_size: int = 8,
                     seed: int = 0, size: int | None = None, max_pixels: int = 50_000_000) -> TranslateResult:
    """Translate every image in ``in_dir`` into ``out_dir`` as ``<name>.png`` (``<name>_s<k>.png`` for k <
    ``num_styles`` > 1). ``condition`` goes to ``model.translate``; a ``reference`` given as a path is loaded.
    ``size``: the square size images are resized to (default: the model's ``image_size``; only fully
    convolutional families — CycleGAN, UNIT, MUNIT — take other sizes)."""
    model = load_model(model_uri, mlflow).eval()
    size = size or model.config.image_size
    condition = dict(condition or {})
    if num_styles < 1:
        raise ConditionError(f"num_styles must be ≥ 1, got {num_styles}")
    if num_styles > 1:
        if not model.multimodal:
            raise ConditionError(f"{model.name} is not multimodal: it makes one output per input (num_styles 1)")
        if "reference" in condition:
            raise ConditionError("a reference gives one style: use a seed for num_styles > 1")
        condition.setdefault("seed", seed)
    if isinstance(condition.get("reference"), str):
        try:
            condition["reference"] = _load_image(condition["reference"], size, max_pixels)[None]
        except (BadImage, OSError) as err:
            raise ConditionError(f"reference image {condition['reference']}: {err}") from err
    names = sorted(f for f in os.listdir(in_dir) if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    skipped, written = [], 0
    for i in range(0, len(names), batch_size):
        batch, kept = [], []
        for name in names[i:i + batch_size]:
            try:
                batch.append(_load_image(os.path.join(in_dir, name), size, max_pixels))
                kept.append(name)
            except BadImage as err:
                skipped.append((name, str(err)))
        if not batch:
            continue
        outputs = _styles(model, torch.stack(batch), condition, num_styles)
        for k, out in enumerate(outputs):
            suffix = f"_s{k}" if num_styles > 1 else ""
            for name, y in zip(kept, out):
                img = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
                Image.fromarray(img).save(os.path.join(out_dir, os.path.splitext(name)[0] + suffix + ".png"))
                written += 1
    return TranslateResult(model_uri, written, skipped, os.path.abspath(out_dir))

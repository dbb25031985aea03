"""Translate a folder of images with a model (``models:/NAME@champion``, a checkpoint folder, …)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pipelines import tracking
from pipelines.importers import IMAGE_EXTS, BadImage, decode_rgb
from pipelines.register import load_model


@dataclass(frozen=True)
class TranslateResult:
    model: str
    written: int
    skipped: list[tuple[str, str]]
    out_dir: str


def translate_folder(model_uri: str, in_dir: str, out_dir: str, *, mlflow: tracking.MlflowConfig | None = None,
                     batch_size: int = 8, seed: int = 0, max_pixels: int = 50_000_000) -> TranslateResult:
    model = load_model(model_uri, mlflow).eval()
    size = model.config.image_size
    names = sorted(f for f in os.listdir(in_dir) if os.path.splitext(f)[1].lower() in IMAGE_EXTS)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    skipped, written = [], 0
    for i in range(0, len(names), batch_size):
        batch, kept = [], []
        for name in names[i:i + batch_size]:
            try:
                with open(os.path.join(in_dir, name), "rb") as f:
                    im = decode_rgb(f.read(), max_pixels=max_pixels)
            except BadImage as err:
                skipped.append((name, str(err)))
                continue
            arr = np.asarray(im.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
            batch.append(torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0)
            kept.append(name)
        if not batch:
            continue
        out = model.translate(torch.stack(batch))
        for name, y in zip(kept, out):
            img = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(img).save(os.path.join(out_dir, os.path.splitext(name)[0] + ".png"))
            written += 1
    return TranslateResult(model_uri, written, skipped, os.path.abspath(out_dir))

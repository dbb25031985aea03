"""Small but real image-to-image datasets built offline from the photographs inside the scikit-image and
scikit-learn wheels (public-domain / CC photos: astronaut, chelsea, coffee, rocket, motorcycle, retina, hubble,
immunohistochemistry, china, flower).

Three datasets, each written in the public layout its family's authors use, so the importers that read them also
read the real datasets users download:

* ``edges2photo`` — pix2pix "aligned": ``train/ val/``, each file ``A|B`` side by side (A = Canny edges drawn
  black on white, as pix2pix's edges2shoes used HED edges; B = the photo tile).
* ``photo2winter`` — CycleGAN "unaligned": ``trainA/ trainB/ testA/ testB/``; A = photo tiles, B = a
  deterministic "winter" restyle of *different* tiles (so the domains are unpaired, but held-out A tiles have a
  known ground truth in B).
* ``styles`` — StarGAN v2 "domains": ``train/<domain>/ val/<domain>/`` with domains photo / winter / cartoon,
  each from a disjoint set of tiles.

Everything is deterministic for a given seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
    "stereo_motorcycle",
)


def photographs() -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8) for every RGB photograph shipped inside the scikit-image and scikit-learn wheels."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = []
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            img = img[0]  # left view; the right one is a near-duplicate
        out.append((name, np.asarray(img, dtype=np.uint8)))
    sk = load_sample_images()
    for fname, img in zip(sk.filenames, sk.images):
        out.append((os.path.splitext(os.path.basename(fname))[0], np.asarray(img, dtype=np.uint8)))
    return out


def tiles(size: int, max_per_photo: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Non-overlapping ``size``² tiles with some texture (flat sky/background tiles dropped), seeded order."""
    rng = np.random.default_rng(seed)
    out = []
    for name, img in photographs():
        h, w = img.shape[:2]
        cands = [
            (y, x)
            for y in range(0, h - size + 1, size)
            for x in range(0, w - size + 1, size)
            if img[y : y + size, x : x + size].std() > 18.0
        ]
        for i in rng.permutation(len(cands))[:max_per_photo]:
            y, x = cands[i]
            out.append((f"{name}_y{y:04d}_x{x:04d}", img[y : y + size, x : x + size]))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def edges(tile: np.ndarray) -> np.ndarray:
    """Canny edges (σ=1.5) of the grayscale tile, drawn black on white, 3 channels."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    e = canny(rgb2gray(tile), sigma=1.5)
    return np.repeat(np.where(e, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def winter(tile: np.ndarray) -> np.ndarray:
    """Deterministic summer→winter restyle: desaturate, brighten, cool (blue) tint."""
    x = tile.astype(np.float32) / 255.0
    gray = x.mean(axis=2, keepdims=True)
    x = 0.35 * x + 0.65 * gray  # desaturate
    x = 0.18 + 0.9 * x  # brighten, lift the shadows
    x = x * np.array([0.88, 0.97, 1.12], dtype=np.float32)  # cool tint
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def cartoon(tile: np.ndarray) -> np.ndarray:
    """Deterministic cartoon restyle: smoothed colours posterised to 4 levels, dark Canny outlines."""
    from skimage.filters import gaussian

    smooth = gaussian(tile, sigma=1.0, channel_axis=2, preserve_range=True)
    levels = np.floor(smooth / 64.0) * 64.0 + 32.0
    out = levels.astype(np.uint8)
    out[edges(tile)[..., 0] == 0] = 20
    return out


def _save(path: str, arr: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", optimize=False)


@dataclass(frozen=True)
class DemoResult:
    out: str
    datasets: dict[str, dict[str, int]]  # dataset -> {folder: image count}


def build_demo(out: str, *, tile_size: int = 64, max_per_photo: int = 60, val_fraction: float = 0.1,
               seed: int = 0) -> DemoResult:
    """Write ``edges2photo/``, ``photo2winter/`` and ``styles/`` under ``out`` (local folder)."""
    if not 16 <= tile_size <= 512:
        raise ValueError(f"tile_size must be in [16, 512], got {tile_size}")
    ts = tiles(tile_size, max_per_photo, seed)
    n_val = max(1, round(len(ts) * val_fraction))
    counts: dict[str, dict[str, int]] = {"edges2photo": {}, "photo2winter": {}, "styles": {}}

    def put(dataset: str, folder: str, key: str, arr: np.ndarray) -> None:
        _save(os.path.join(out, dataset, folder, f"{key}.png"), arr)
        counts[dataset][folder] = counts[dataset].get(folder, 0) + 1

    # (a) edges -> photo, aligned A|B, every tile
    for i, (key, t) in enumerate(ts):
        put("edges2photo", "val" if i < n_val else "train", key, np.concatenate([edges(t), t], axis=1))
    # (b) unpaired photo / winter from the two halves of the tiles
    half = len(ts) // 2
    for i, (key, t) in enumerate(ts):
        domain, j = ("A", i) if i < half else ("B", i - half)
        split = "test" if j < n_val // 2 else "train"
        put("photo2winter", f"{split}{domain}", key, t if domain == "A" else winter(t))
    # (c) three labelled domains from disjoint thirds
    third = len(ts) // 3
    styles = {"photo": lambda t: t, "winter": winter, "cartoon": cartoon}
    for d, (domain, fn) in enumerate(styles.items()):
        for j, (key, t) in enumerate(ts[d * third : (d + 1) * third]):
            put("styles", f"{'val' if j < n_val // 3 else 'train'}/{domain}", key, fn(t))
    return DemoResult(out=os.path.abspath(out), datasets=counts)

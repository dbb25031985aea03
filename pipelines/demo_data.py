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
* ``facades`` — pix2pix "aligned", generated rather than cut from photos (like CMP Facades' labels → photos):
  A a flat-coloured label map of a synthetic facade (wall — its label colour naming one of three materials —,
  a grid of windows, a door, balconies, an optional sky band), B its rendering (the material's colour under a
  vertical light falloff, glass with a sky-reflection gradient and a light frame, shadows under windows and
  balconies, wood and railings, mild noise: the part no model can predict). The input determines most of the
  output, so a few minutes of training on 2 CPU cores already show the structure (the quickstart's set).

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


# wall label colour → its material's colour (sandstone, brick, plaster): the material is readable from the input
WALLS = {(200, 60, 60): (176, 148, 112), (60, 200, 60): (150, 70, 55), (60, 60, 200): (215, 212, 200)}
LABELS = {"window": (240, 240, 40), "door": (40, 220, 220), "balcony": (220, 40, 220), "sky": (250, 250, 250)}


def facade(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(label map A, rendering B) of one synthetic facade, both ``size`` × ``size`` × 3 uint8 (layout in units
    of size/128)."""
    u = size / 128
    n = lambda v: max(1, int(round(v * u)))  # noqa: E731 — a length at this size
    wall_label = list(WALLS)[rng.integers(len(WALLS))]
    a = np.empty((size, size, 3), np.uint8)
    a[:] = wall_label
    y = np.arange(size, dtype=np.float32)[:, None, None]
    b = np.asarray(WALLS[wall_label], np.float32)[None, None] * (1.05 - 0.35 * y / size)  # light from above
    b = np.broadcast_to(b, (size, size, 3)).copy()
    top = 0
    if rng.random() < 0.5:  # a sky band above the roof line
        top = int(rng.integers(n(8), n(24)))
        a[:top] = LABELS["sky"]
        b[:top] = np.array([150, 185, 230], np.float32) + 40 * (np.arange(top)[:, None, None] / top)
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    cell_h, cell_w = (size - top - n(30)) // rows, size // cols
    for r in range(rows):
        for c in range(cols):
            h = int(rng.integers(cell_h // 2, max(cell_h // 2 + 1, cell_h - n(4))))
            w = int(rng.integers(cell_w // 3, max(cell_w // 3 + 1, cell_w - n(6))))
            y0, x0 = top + n(4) + r * cell_h + (cell_h - h) // 2, c * cell_w + (cell_w - w) // 2
            a[y0:y0 + h, x0:x0 + w] = LABELS["window"]
            glass = np.linspace(120, 40, h, dtype=np.float32)[:, None, None] * np.array([0.8, 0.9, 1.1], np.float32)
            b[y0:y0 + h, x0:x0 + w] = glass
            b[y0:y0 + h, x0:x0 + n(2)] = b[y0:y0 + n(2), x0:x0 + w] = 235  # light frame, left and top
            b[y0 + h:y0 + h + n(3), x0 + n(2):x0 + w + n(2)] *= 0.6  # shadow under the sill
            if r > 0 and rng.random() < 0.3:  # a balcony across the window's lower part
                by, bx, bh = y0 + h - n(6), max(0, x0 - n(2)), n(6)
                a[by:by + bh, bx:x0 + w + n(2)] = LABELS["balcony"]
                rail = 110 + 60 * ((np.arange(bh) % 2) == 0)
                b[by:by + bh, bx:x0 + w + n(2)] = rail[:, None, None]
                b[by + bh:by + bh + n(3), bx + n(2):x0 + w + n(4)] *= 0.55
    dw, dh = int(rng.integers(n(14), n(24))), int(rng.integers(n(22), n(28)))
    dx = int(rng.integers(0, size - dw))
    a[size - dh:, dx:dx + dw] = LABELS["door"]
    wood = 95 + 25 * ((np.arange(dw) // n(3)) % 2)
    b[size - dh:, dx:dx + dw] = wood[None, :, None] * np.array([1.0, 0.62, 0.35], np.float32)
    b += rng.normal(0, 4, b.shape)  # unpredictable texture
    return a, np.clip(b, 0, 255).astype(np.uint8)


def _save(path: str, arr: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG", optimize=False)


@dataclass(frozen=True)
class DemoResult:
    out: str
    datasets: dict[str, dict[str, int]]  # dataset -> {folder: image count}


def build_demo(out: str, *, tile_size: int = 64, max_per_photo: int = 60, val_fraction: float = 0.1,
               seed: int = 0) -> DemoResult:
    """Write ``edges2photo/``, ``photo2winter/``, ``styles/`` and ``facades/`` under ``out`` (local folder);
    ``facades`` has 7 × ``max_per_photo`` pairs of 2 × ``tile_size`` px."""
    from pipelines.errors import require_extra

    require_extra("demo", "skimage", "sklearn", what="the demo datasets (photos inside the scikit-image and "
                  "scikit-learn wheels)")
    if not 16 <= tile_size <= 512:
        raise ValueError(f"tile_size must be in [16, 512], got {tile_size}")
    ts = tiles(tile_size, max_per_photo, seed)
    n_val = max(1, round(len(ts) * val_fraction))
    counts: dict[str, dict[str, int]] = {"edges2photo": {}, "photo2winter": {}, "styles": {}, "facades": {}}

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
    # (d) label map -> facade rendering, aligned A|B, generated
    rng, n_facades = np.random.default_rng(seed), 7 * max_per_photo
    for i in range(n_facades):
        a, b = facade(rng, 2 * tile_size)
        put("facades", "val" if i < max(1, round(n_facades * val_fraction)) else "train", f"facade_{i:04d}",
            np.concatenate([a, b], axis=1))
    return DemoResult(out=os.path.abspath(out), datasets=counts)

"""Read image-to-image datasets in the public layouts their authors publish, and validate every image.

=============  ==========  =========================================  ==========================================
layout         data_mode   folders                                    as published by
=============  ==========  =========================================  ==========================================
``aligned``    paired      ``train/ val/ [test/]``, each file A|B     pix2pix (facades, edges2shoes, maps …)
``unaligned``  unpaired    ``trainA/ trainB/ testA/ testB/``          CycleGAN (horse2zebra, summer2winter …)
``domains``    labeled     ``train/<domain>/ val/<domain>/``          StarGAN v2 (AFHQ, CelebA-HQ)
``images``     single      any folder of images, or ``train/ val/``   CelebA, LSUN, a folder of photos
=============  ==========  =========================================  ==========================================

A dataset may sit inside one extra top folder, as the archives unpack (``facades/train/…``). Hidden files are
ignored; files that are not images, or that do not fit the layout, are reported as skipped with the reason.

``images`` (one domain, for the single-domain families AE, VAE, GAN, …): with ``train/ val/ [test/]`` folders, the
images under each (at any depth) are that split; without them, every image of the folder (at any depth) is split by
a hash of its path — ``val`` when sha256(path) falls in the lowest ``VAL_FRACTION`` (10%) of the hash range, else
``train`` (a folder that would get no val image gives its lowest-hash image to val) — so a file keeps its split
when files are added or removed. A folder that fits no other layout is detected as ``images``; a ``train/ val/``
folder of plain images must be declared (``shard.layout: images``: auto-detection reads it as aligned A|B pairs).
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from PIL import Image

from pipelines import storage
from pipelines.errors import DatasetError

Layout = Literal["auto", "aligned", "unaligned", "domains", "images"]
DATA_MODE = {"aligned": "paired", "unaligned": "unpaired", "domains": "labeled", "images": "single"}
IMAGES_DOMAIN = "images"  # the one domain of an ``images`` dataset (its ``domain.cls`` 0)
VAL_FRACTION = 0.1  # ``images`` without split folders: the share of images (by path hash) held out as val
SPLITS = ("train", "val", "test")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
_UNALIGNED_DIR = re.compile(r"^(train|val|test)([AB])$")


@dataclass(frozen=True)
class SourceFile:
    relpath: str
    split: str  # train / val / test
    domain: str  # "" (aligned), "A"/"B" (unaligned), the domain folder name (domains) or "images" (images)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class SourceListing:
    uri: str
    root: str  # the layout's root below ``uri`` ("" or the one extra top folder)
    layout: str
    files: list[SourceFile]
    domains: list[str]  # index = the ``domain.cls`` label; [] for aligned
    skipped: list[Skipped]

    @property
    def data_mode(self) -> str:
        return DATA_MODE[self.layout]

    @property
    def fingerprint(self) -> str:
        """sha256 over (path, size, mtime) of every usable file: changes when the source changes."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.relpath}\0{f.size}\0{f.mtime_ns}\n".encode())
        return h.hexdigest()

    def file_uri(self, f: SourceFile) -> str:
        return storage.join(self.uri, *filter(None, [self.root, f.relpath]))


def _detect(parts: list[list[str]]) -> str | None:
    if any(len(p) == 2 and _UNALIGNED_DIR.match(p[0]) for p in parts):
        return "unaligned"
    if any(len(p) == 3 and p[0] in SPLITS for p in parts):
        return "domains"
    if any(len(p) == 2 and p[0] in SPLITS for p in parts):
        return "aligned"
    if any(posixpath.splitext(p[-1])[1].lower() in IMAGE_EXTS for p in parts):
        return "images"  # a folder of images that fits no two-domain layout: one domain
    return None


def _hash_unit(relpath: str) -> float:
    """A path's place in [0, 1): the first 8 bytes of its sha256 (stable across runs and machines)."""
    return int(hashlib.sha256(relpath.encode()).hexdigest()[:16], 16) / 16 ** 16


def _images_splits(rels: list[list[str]]) -> dict[str, str] | None:
    """``images`` without split folders: {path: "train" | "val"} by path hash (None: the folder has split folders,
    which decide). At least one val image when there are two or more."""
    if any(len(p) >= 2 and p[0] in SPLITS for p in rels):
        return None
    paths = ["/".join(p) for p in rels if posixpath.splitext(p[-1])[1].lower() in IMAGE_EXTS]
    out = {r: "val" if _hash_unit(r) < VAL_FRACTION else "train" for r in paths}
    if len(paths) >= 2 and "val" not in out.values():
        out[min(paths, key=_hash_unit)] = "val"
    return out


def _place(layout: str, p: list[str], hashed: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(split, domain) of a file's path parts under the layout root, or None when it does not fit (``hashed``: the
    hash splits of an ``images`` folder without split folders)."""
    if layout == "images":
        if hashed is not None:
            return (hashed["/".join(p)], IMAGES_DOMAIN) if "/".join(p) in hashed else None
        return (p[0], IMAGES_DOMAIN) if len(p) >= 2 and p[0] in SPLITS else None
    if layout == "aligned" and len(p) == 2 and p[0] in SPLITS:
        return p[0], ""
    if layout == "unaligned" and len(p) == 2 and (m := _UNALIGNED_DIR.match(p[0])):
        return m.group(1), m.group(2)
    if layout == "domains" and len(p) == 3 and p[0] in SPLITS:
        return p[0], p[1]
    return None


def scan(uri: str, layout: Layout = "auto") -> SourceListing:
    """List a source dataset, detect (or check) its layout, and sort files into splits and domains."""
    entries = [e for e in storage.list_files(uri) if not any(s.startswith(".") for s in e.relpath.split("/"))]
    if not entries:
        raise DatasetError(f"no files found under {storage.describe(uri)}")
    root = ""
    tops = {e.relpath.split("/", 1)[0] for e in entries}
    if len(tops) == 1 and "/" in entries[0].relpath and (top := tops.pop()) not in SPLITS \
            and not _UNALIGNED_DIR.match(top):
        root = top  # the archive's own top folder, e.g. facades/train/...
    rel = [(e, posixpath.relpath(e.relpath, root) if root else e.relpath) for e in entries]
    found = _detect([r.split("/") for _, r in rel])
    if layout == "auto":
        if found is None:
            raise DatasetError(
                f"cannot detect the layout of {uri}: expected train/ val/ (aligned A|B pairs), "
                "trainA/ trainB/ testA/ testB/ (unaligned), train/<domain>/ (domains) or image files (images)"
            )
        layout = found  # type: ignore[assignment]
    files, skipped = [], []
    hashed = _images_splits([r.split("/") for _, r in rel]) if layout == "images" else None
    for e, r in rel:
        ext = posixpath.splitext(r)[1].lower()
        placed = _place(layout, r.split("/"), hashed)
        if ext not in IMAGE_EXTS:
            skipped.append(Skipped(e.relpath, f"not an image file ({ext or 'no extension'})"))
        elif placed is None:
            skipped.append(Skipped(e.relpath, f"not part of the {layout} layout"))
        else:
            files.append(SourceFile(r, placed[0], placed[1], e.size, e.mtime_ns))
    if not files:
        raise DatasetError(
            f"{uri} has no image files in the {layout} layout"
            + (f" (it looks like '{found}'; set shard.layout or leave it 'auto')" if found and found != layout else "")
        )
    domains = ([] if layout == "aligned" else ["A", "B"] if layout == "unaligned" else [IMAGES_DOMAIN]
               if layout == "images" else sorted({f.domain for f in files}))
    return SourceListing(uri, root, layout, files, domains, skipped)


class BadImage(ValueError):
    """A source image that cannot be used; its message is the reason shown in the report."""


def decode_rgb(data: bytes, *, max_pixels: int, max_bytes: int | None = None,
               formats: tuple[str, ...] | None = None) -> Image.Image:
    """Decode bytes to an RGB PIL image, converting gray/alpha/palette/CMYK/16-bit; raise BadImage with a reason.

    Bounded before anything is allocated: more than ``max_bytes`` bytes is refused unread, and the pixel count is
    checked on the header (``Image.open`` reads only that) before ``load`` decodes — a 65 KB PNG can claim
    8192×8192 (200 MB as RGB). PIL's own decompression-bomb limit stays on as a second guard. ``formats``: the
    PIL formats accepted (e.g. ``("PNG",)`` for shard samples); None: any PIL reads."""
    if not data:
        raise BadImage("empty file")
    if max_bytes is not None and len(data) > max_bytes:
        raise BadImage(f"file too large: {len(data)} bytes > {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=formats)
            if im.width * im.height > max_pixels:
                raise BadImage(f"image too large: {im.width}x{im.height} > max_pixels={max_pixels}")
            im.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImage(f"image too large (decompression-bomb guard): {err}") from None
    except Image.UnidentifiedImageError:
        expected = f" {'/'.join(formats)}" if formats else "n image"
        raise BadImage(f"not a{expected} (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        text = str(err) or type(err).__name__
        raise BadImage(f"unreadable or truncated image: {text}") from None
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.int64)
        im = Image.fromarray((arr * 255 // max(int(arr.max()), 1)).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, (255, 255, 255))
        im.paste(rgba, mask=rgba.getchannel("A"))  # composite on white, as viewers show it
    return im.convert("RGB") if im.mode != "RGB" else im


def split_pair(im: Image.Image) -> tuple[Image.Image, Image.Image]:
    """A|B side by side → (A, B). The width must be twice the height (±1 px), as pix2pix's datasets are."""
    w, h = im.size
    if abs(w - 2 * h) > 1:
        raise BadImage(f"A|B pair must be twice as wide as high, got {w}x{h}")
    half = w // 2
    return im.crop((0, 0, half, h)), im.crop((half, 0, 2 * half, h))


def report_json(skipped: list[Skipped]) -> str:
    return json.dumps([asdict(s) for s in skipped], indent=1)

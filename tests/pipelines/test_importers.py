import io
import shutil

import numpy as np
import pytest
from PIL import Image

from pipelines import importers
from pipelines.errors import DatasetError
from pipelines.importers import BadImage, decode_rgb, split_pair


def png(arr, mode=None, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


RGB = (np.arange(32 * 64 * 3) % 251).astype(np.uint8).reshape(32, 64, 3)


@pytest.mark.parametrize("name,layout,mode,domains,splits", [
    ("edges2photo", "aligned", "paired", [], {"train", "val"}),
    ("photo2winter", "unaligned", "unpaired", ["A", "B"], {"train", "test"}),
    ("styles", "domains", "labeled", ["cartoon", "photo", "winter"], {"train", "val"}),
])
def test_detects_the_public_layouts(demo_root, name, layout, mode, domains, splits):
    listing = importers.scan(f"{demo_root}/{name}")
    assert (listing.layout, listing.data_mode, listing.domains) == (layout, mode, domains)
    assert {f.split for f in listing.files} == splits and not listing.skipped


def test_archive_top_folder_and_stray_files(demo_root, tmp_path):
    # as users unpack horse2zebra.zip: horse2zebra/trainA/..., plus files that are not part of the layout
    root = tmp_path / "horse2zebra"
    shutil.copytree(f"{demo_root}/photo2winter", root)
    (root / "README.txt").write_text("x")
    (root / "trainA" / ".DS_Store").write_bytes(b"junk")
    (root / "trainA" / "notes.txt").write_text("x")
    listing = importers.scan(str(tmp_path))
    assert listing.layout == "unaligned" and listing.root == "horse2zebra"
    reasons = {s.path: s.reason for s in listing.skipped}
    assert reasons == {"horse2zebra/README.txt": "not an image file (.txt)",
                       "horse2zebra/trainA/notes.txt": "not an image file (.txt)"}
    assert listing.file_uri(listing.files[0]).startswith(str(root))


def test_declared_layout_that_does_not_fit(demo_root):
    with pytest.raises(DatasetError, match="looks like 'aligned'"):
        importers.scan(f"{demo_root}/edges2photo", "unaligned")


def test_empty_or_unknown_source(tmp_path):
    with pytest.raises(DatasetError, match="no files found"):
        importers.scan(str(tmp_path))
    (tmp_path / "x.png").write_bytes(png(RGB))
    with pytest.raises(DatasetError, match="cannot detect the layout"):
        importers.scan(str(tmp_path))


def test_fingerprint_changes_with_the_source(demo_root, tmp_path):
    shutil.copytree(f"{demo_root}/edges2photo", tmp_path / "d")
    before = importers.scan(str(tmp_path / "d")).fingerprint
    assert importers.scan(str(tmp_path / "d")).fingerprint == before
    (tmp_path / "d" / "train" / "new.png").write_bytes(png(RGB))
    assert importers.scan(str(tmp_path / "d")).fingerprint != before


@pytest.mark.parametrize("mode,arr", [
    ("L", RGB[..., 0]), ("RGBA", np.dstack([RGB, np.full(RGB.shape[:2], 128, np.uint8)])),
    (None, (RGB[..., 0].astype(np.uint16) * 200)),  # 16-bit gray PNG
])
def test_other_modes_are_converted_to_rgb(mode, arr):
    im = decode_rgb(png(arr, mode=mode), max_pixels=10**6)
    assert im.mode == "RGB" and im.size == (64, 32)


def test_cmyk_jpeg_and_palette():
    buf = io.BytesIO()
    Image.fromarray(RGB).convert("CMYK").save(buf, format="JPEG")
    assert decode_rgb(buf.getvalue(), max_pixels=10**6).mode == "RGB"
    assert decode_rgb(png(RGB, fmt="GIF"), max_pixels=10**6).mode == "RGB"


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not an image"),
    (png(RGB)[:200], "unreadable or truncated"),
])
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(BadImage, match=reason):
        decode_rgb(data, max_pixels=10**6)


def test_truncated_jpeg():
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, format="JPEG")
    with pytest.raises(BadImage, match="truncated"):
        decode_rgb(buf.getvalue()[: len(buf.getvalue()) // 2], max_pixels=10**6)


def test_decompression_bomb_guard():
    with pytest.raises(BadImage, match=r"image too large: 64x32 > max_pixels=1000"):
        decode_rgb(png(RGB), max_pixels=1000)


def test_pair_split_and_wrong_aspect():
    a, b = split_pair(Image.fromarray(RGB))
    assert np.array_equal(np.asarray(a), RGB[:, :32]) and np.array_equal(np.asarray(b), RGB[:, 32:])
    with pytest.raises(BadImage, match="twice as wide as high, got 40x32"):
        split_pair(Image.fromarray(RGB[:, :40]))

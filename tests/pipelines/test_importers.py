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
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="cannot detect the layout"):
        importers.scan(str(tmp_path))


def test_a_folder_of_images_is_one_domain_split_by_path_hash(tmp_path):
    # as CelebA unpacks: img_align_celeba/000001.jpg …, here with a sub-folder and a stray file
    root = tmp_path / "celeba"
    (root / "more").mkdir(parents=True)
    for i in range(30):
        (root / ("more" if i % 3 == 0 else "") / f"{i:06d}.png").write_bytes(png(RGB))
    (root / "notes.txt").write_text("x")
    listing = importers.scan(str(tmp_path))
    assert (listing.layout, listing.data_mode, listing.domains, listing.root) == ("images", "single", ["images"],
                                                                                  "celeba")
    split = {f.relpath: f.split for f in listing.files}
    assert len(split) == 30 and {f.domain for f in listing.files} == {"images"}
    assert [s.path for s in listing.skipped] == ["celeba/notes.txt"]
    # the rule, written out: val when the first 8 bytes of sha256(path) fall in the lowest 10% of their range
    import hashlib

    rule = {p: "val" if int(hashlib.sha256(p.encode()).hexdigest()[:16], 16) < 0.1 * 16 ** 16 else "train"
            for p in split}
    assert split == rule and "val" in split.values() and "train" in split.values()
    # adding images never moves an image to the other split
    for i in range(30, 60):
        (root / f"{i:06d}.png").write_bytes(png(RGB))
    grown = {f.relpath: f.split for f in importers.scan(str(tmp_path)).files}
    assert {p: grown[p] for p in split} == split and len(grown) == 60
    # a folder too small for the 10% to hold one out still gets one val image
    small = tmp_path / "small"
    small.mkdir()
    for name in ("a.png", "b.png"):
        (small / name).write_bytes(png(RGB))
    assert sorted(f.split for f in importers.scan(str(small)).files) == ["train", "val"]


def test_declared_images_layout_with_split_folders(demo_root, tmp_path):
    # train/ val/ of plain images reads as a two-domain layout (aligned A|B pairs, or domains with sub-folders)
    # unless declared; declared, the folders are the splits, whatever their depth
    root = tmp_path / "photos"
    for split, n in (("train", 3), ("val", 2)):
        (root / split / "sub").mkdir(parents=True)
        for i in range(n):
            (root / split / ("sub" if i else "") / f"{i}.png").write_bytes(png(RGB))
    (root / "stray.png").write_bytes(png(RGB))
    assert importers.scan(str(root)).layout == "domains"
    listing = importers.scan(str(root), "images")
    assert sorted((f.split, f.relpath) for f in listing.files) == [
        ("train", "train/0.png"), ("train", "train/sub/1.png"), ("train", "train/sub/2.png"),
        ("val", "val/0.png"), ("val", "val/sub/1.png")]
    assert [(s.path, s.reason) for s in listing.skipped] == [("stray.png", "not part of the images layout")]


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

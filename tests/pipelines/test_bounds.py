"""Inputs are bounded before they are decoded, and names that become folders are checked (no Ray, seconds).

Crafted images: a real decompression bomb (a ~65 KB PNG that decodes to 8192×8192) and a PNG header that claims
50000×50000. Both must be refused on the header, before any pixel is allocated — measured in a fresh process by its
peak resident memory, not assumed."""

import io
import json
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from pipelines.config import load_config
from pipelines.data import MAX_SAMPLE_PIXELS, _decode_png
from pipelines.errors import ConfigError
from pipelines.importers import BadImage
from pipelines.translate import output_uri, UnsafeName
from tests.conftest import REPO


def bomb_png(side: int = 8192) -> bytes:
    """A genuine PNG of side² black gray pixels: ~65 KB that decodes to 67 MB (200 MB as RGB)."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def header_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height RGB with next to no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_shard_sample_decoder_refuses_bombs_and_oversized_bytes():
    assert len(bomb_png()) < 100_000 and 8192 * 8192 > MAX_SAMPLE_PIXELS
    with pytest.raises(BadImage, match=r"image too large: 8192x8192 > max_pixels"):
        _decode_png(bomb_png())
    with pytest.raises(BadImage, match=r"image too large"):
        _decode_png(header_png(50_000, 50_000))
    small = io.BytesIO()
    Image.new("RGB", (16, 16)).save(small, format="PNG")
    assert _decode_png(small.getvalue()).shape == (16, 16, 3)
    with pytest.raises(BadImage, match=r"file too large: \d+ bytes > 10"):
        _decode_png(small.getvalue(), max_bytes=10)
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16)).save(jpeg, format="JPEG")
    with pytest.raises(BadImage, match="not a PNG"):  # shards hold PNGs only: no other PIL decoder is reached
        _decode_png(jpeg.getvalue())


PEAK = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from pipelines.data import _decode_png
from tests.pipelines.test_bounds import bomb_png, header_png
samples = [bomb_png(), header_png(50_000, 50_000)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reasons = []
for data in samples:
    try:
        _decode_png(data)
        reasons.append("decoded")
    except Exception as err:
        reasons.append(str(err))
print(json.dumps({{"grew_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, "reasons": reasons}}))
"""


def test_bomb_is_refused_before_its_pixels_are_allocated():
    """Decoding the 8192² bomb would take ≥ 67 MB (L) and 200 MB (RGB); refused on its header, the process's peak
    resident memory grows by less than 20 MB."""
    out = subprocess.run([sys.executable, "-c", PEAK.format(repo=REPO)], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert all("image too large" in r for r in measured["reasons"]), measured
    assert measured["grew_kib"] < 20 * 1024, measured


@pytest.mark.parametrize("stem", ["../../../ESCAPED", "/etc/x", "a/../../b", "a\\..\\b", "", "a//b", "./a", "a/.",
                                  "a\0b", "a\nb", "x" * 201, "/".join(["abcd"] * 200)])
def test_unsafe_output_names_are_refused(stem):
    for output in ("/tmp/out", "s3://bucket/out"):
        with pytest.raises(UnsafeName, match="not written"):
            output_uri(output, stem)


def test_safe_output_names_stay_below_the_output():
    assert output_uri("/tmp/out", "sub/c", "_s1") == "/tmp/out/sub/c_s1.png"
    assert output_uri("s3://bucket/out", "0001") == "s3://bucket/out/0001.png"
    assert output_uri("/tmp/out", "a..b") == "/tmp/out/a..b.png"  # '..' inside a name is no path part


@pytest.mark.parametrize("key", ["train.run_name", "tune.name"])
@pytest.mark.parametrize("value", ["../../x", "a/b", "a..b", ".hidden", "a\\b", "x" * 129, "-x"])
def test_run_and_experiment_names_are_single_safe_path_parts(key, value):
    base = ["shard.source=data/x", "shard.output=out/x", "train.dataset=out/x"]
    with pytest.raises(ConfigError, match=f"'{key}'.*not a safe name"):
        load_config(None, base + [f"{key}={value}"])
    assert load_config(None, base + [f"{key}=pix2pix-edges2photo-2026-01-02"])


def test_dataset_names_are_single_safe_path_parts_too():
    base = ["shard.source=data/x", "shard.output=out/x", "train.dataset=out/x"]
    with pytest.raises(ConfigError, match="'shard.name'.*not a safe name"):
        load_config(None, base + ["shard.name=../../../x"])


def test_a_default_dataset_name_is_made_safe():
    from pipelines.shard import ShardConfig

    assert ShardConfig(source="/data/my photos (2026)", output="o").dataset_name() == "my-photos-2026"
    assert ShardConfig(source="s3://bucket/raw/facades/?endpoint_override=x", output="o").dataset_name() == "facades"
    assert ShardConfig(source="/", output="o").dataset_name() == "dataset"


@pytest.mark.parametrize("field, value", [("dataset", "../../../x"), ("path", "../../outside.tar"),
                                          ("path", "/etc/shard.tar"), ("path", "train/../../x.tar")])
def test_a_crafted_manifest_cannot_lead_out_of_its_folders(tmp_path, field, value):
    """A manifest whose dataset name or shard path leads out (run folders are named after the dataset; shards are
    opened by path) is refused when read, naming the field."""
    from pipelines import manifest as mf

    doc = {"format": "i2i-webdataset/1", "id": "0" * 64, "dataset": "ok", "data_mode": "paired",
           "columns": ["input", "target"], "domains": [], "plan_id": "p", "code_version": "x", "created": "now",
           "source": {"uri": "/src", "layout": "aligned", "files": 1, "fingerprint": "f"}, "config": {},
           "splits": {"train": {"samples": 1, "bytes": 1, "domains": {},
                                "shards": [{"path": "train/shard-000000.tar", "samples": 1, "bytes": 1,
                                            "sha256": "0" * 64}]}},
           "skipped": []}
    if field == "dataset":
        doc["dataset"] = value
    else:
        doc["splits"]["train"]["shards"][0]["path"] = value
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="not a safe name" if field == "dataset" else "not a plain relative path"):
        mf.read_manifest(str(tmp_path))


@pytest.mark.parametrize("date", ["2026-01-01\n", "2026-13-40", "2026-1-1", "../../x"])
def test_nightly_dates_are_calendar_dates(tmp_path, date):
    from pipelines.errors import I2IError
    from pipelines.nightly import Schedule, run_schedule

    schedule = Schedule(state=str(tmp_path / "state"), models=[{"name": "m", "config": "none.yaml"}])
    with pytest.raises(I2IError, match="calendar date"):
        run_schedule(schedule, date)
    assert not (tmp_path / "state").exists()

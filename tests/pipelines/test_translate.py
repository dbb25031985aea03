"""Translating folders with conditions, from tiny saved checkpoint folders (no cluster needed)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from i2i_models.registry import get_model
from jobs import translate as translate_job
from pipelines.errors import ConditionError
from pipelines.translate import translate_folder
from tests.i2i_models.test_contract import TINY


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return str(folder)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    def save(name: str) -> str:
        folder = str(tmp_path_factory.mktemp(name))
        get_model(name, **TINY[name]).save_pretrained(folder)
        return folder

    return save


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def test_munit_seeded_styles_and_reference(checkpoint, images, tmp_path):
    ckpt = checkpoint("munit")
    r = translate_folder(ckpt, images, str(tmp_path / "s"), condition={"seed": 5}, num_styles=2, batch_size=2,
                         size=32)
    assert r.written == 6 and sorted(os.listdir(tmp_path / "s")) == [f"{n}_s{k}.png" for n in "abc" for k in (0, 1)]
    s0, s1 = pixels(tmp_path / "s" / "a_s0.png"), pixels(tmp_path / "s" / "a_s1.png")
    assert s0.shape == (32, 32, 3) and np.abs(s0 - s1).max() > 0  # two styles, two outputs
    again = translate_folder(ckpt, images, str(tmp_path / "again"), condition={"seed": 5}, num_styles=2,
                             batch_size=3, size=32)  # other batching: the same pictures (style k = seed + k)
    assert again.written == 6
    assert np.array_equal(pixels(tmp_path / "again" / "c_s1.png"), pixels(tmp_path / "s" / "c_s1.png"))
    ref = translate_folder(ckpt, images, str(tmp_path / "ref"), size=32,
                           condition={"reference": os.path.join(images, "b.png"), "direction": "b2a"})
    assert ref.written == 3 and sorted(os.listdir(tmp_path / "ref")) == ["a.png", "b.png", "c.png"]
    with pytest.raises(ConditionError, match="give at most one of seed, reference, style"):
        translate_folder(ckpt, images, str(tmp_path / "x"), size=32,
                         condition={"seed": 1, "reference": os.path.join(images, "b.png")})


def test_stargan_v2_target_domain(checkpoint, images, tmp_path):
    ckpt = checkpoint("stargan_v2")
    r = translate_folder(ckpt, images, str(tmp_path / "d1"), condition={"domain": 1, "seed": 0})
    assert r.written == 3 and pixels(tmp_path / "d1" / "a.png").shape == (32, 32, 3)
    translate_folder(ckpt, images, str(tmp_path / "d2"), condition={"domain": 2, "seed": 0})
    assert np.abs(pixels(tmp_path / "d1" / "a.png") - pixels(tmp_path / "d2" / "a.png")).max() > 0
    with pytest.raises(ConditionError, match="domain"):
        translate_folder(ckpt, images, str(tmp_path / "x"))  # the target domain is required
    with pytest.raises(ConditionError, match=r"domain must be in \[0, 3\)"):
        translate_folder(ckpt, images, str(tmp_path / "x"), condition={"domain": 7})


def test_cli_flags_and_one_line_errors(checkpoint, images, tmp_path, capsys):
    munit, cyclegan = checkpoint("munit"), checkpoint("cyclegan")
    args = ["--model", munit, "--seed", "3", "--num-styles", "3", "--size", "32", images, str(tmp_path / "m")]
    assert translate_job.main(args) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 9
    assert translate_job.main(["--model", cyclegan, "--direction", "b2a", images, str(tmp_path / "c")]) == 0
    capsys.readouterr()
    assert translate_job.main(["--model", cyclegan, "--seed", "1", images, str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed" in err and "cyclegan" in err
    assert translate_job.main(["--model", cyclegan, "--num-styles", "2", images, str(tmp_path / "x")]) == 2
    assert "not multimodal" in capsys.readouterr().err

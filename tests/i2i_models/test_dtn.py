"""DTN: network counts of the digit config (yunjey's shapes), every term against a hand computation, the fixed f
(no gradient, never changes, travels with the model), one-way translation, and the errors about f."""

import copy
import os
import pickle

import pytest
import torch

from i2i_models.base import I2IModel
from i2i_models.dtn import FACES_WEIGHTS, DigitF, TernaryDiscriminator, quiet_jit, total_variation
from i2i_models.registry import get_model

TINY = dict(image_size=16, nef=4, f_dim=8, ngf=4, ndf=4)  # out_channels 1: a gray target, replicated for f


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def test_digit_counts_are_yunjeys_with_a_ternary_head():
    m = get_model("dtn")
    assert {k: n_params(v) for k, v in m.nets.items()} == {"f": 896_384, "g": 2_526_977, "D": 1_502_979}
    # yunjey's binary D is the same network with 1 logit: the ternary head adds 2 × (512·4·4 + 1) = 16,386
    assert n_params(TernaryDiscriminator(1, ndf=128, image_size=32, classes=1)) == 1_486_593
    assert 1_502_979 - 1_486_593 == 2 * (512 * 16 + 1)
    assert m.default_weights() == {"gan": 1, "const": 15, "tid": 15, "tv": 0, "d_fake_s": 1, "d_fake_t": 1,
                                   "d_real_t": 1}
    assert get_model("dtn", loss_weights=FACES_WEIGHTS).loss_weights["tv"] == 0.05
    assert m.run_length(m.config).value == 2000 and m.directions == ("a2b",)


def _lsm(logits, cls):  # −log softmax(logits)[cls], averaged over the batch
    return -(logits[:, cls] - logits.exp().sum(1).log()).mean()


def test_every_term_equals_a_hand_computation():
    torch.manual_seed(0)
    m = get_model("dtn", **TINY)
    m.setup_optimizers()
    g = torch.Generator().manual_seed(1)
    s, t = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1, torch.rand(3, 1, 16, 16, generator=g) * 2 - 1
    g0, D0, f = copy.deepcopy(m.nets["g"]), copy.deepcopy(m.nets["D"]), m.nets["f"].net
    out = m.train_step({"real_a": s, "real_b": t}, 0).losses
    D1 = m.nets["D"]  # the g step sees D after its step (D first, as the loop runs)
    with torch.no_grad():
        f_s, f_t = f(s).flatten(1), f(t.repeat(1, 3, 1, 1)).flatten(1)  # gray t replicated for f
        fake_s, fake_t = g0(f_s[:, :, None, None]), g0(f_t[:, :, None, None])
        want = {
            "d_fake_s": _lsm(D0(fake_s), 0), "d_fake_t": _lsm(D0(fake_t), 1), "d_real_t": _lsm(D0(t), 2),
            "gan": _lsm(D1(fake_s), 2) + _lsm(D1(fake_t), 2),
            "const": (f(fake_s.repeat(1, 3, 1, 1)).flatten(1) - f_s).pow(2).mean(),  # source only
            "tid": (t - fake_t).pow(2).mean(),  # target only
            "tv": total_variation(fake_s),
        }
    assert set(out) == set(want)
    for k, v in want.items():
        torch.testing.assert_close(out[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_total_variation_with_exponent_one():
    # one pixel has both neighbours: ((3 − 0)² + (4 − 0)²)^½ = 5
    assert total_variation(torch.tensor([[[[0.0, 3.0], [4.0, 9.0]]]])).item() == pytest.approx(5.0)
    z = torch.tensor([[[[0.0, 1.0, 1.0], [2.0, 0.0, 0.0], [2.0, 0.0, 5.0]]]])
    # (0,0): (1, 2) → √5; (0,1): (0, −1) → 1; (1,0): (−2, 0) → 2; (1,1): (0, 0) → 0 (clamped at 1e-12 → 1e-6)
    assert total_variation(z).item() == pytest.approx((5 ** 0.5 + 1 + 2 + 1e-6) / 4)


def test_f_gets_no_gradient_and_never_changes_while_const_trains_g():
    torch.manual_seed(0)
    m = get_model("dtn", loss_weights={"gan": 0, "tid": 0, "tv": 0}, **TINY)  # only const reaches g
    m.setup_optimizers()
    assert set(m.optimizers) == {"g", "D"}
    f_before = copy.deepcopy(m.nets["f"].state_dict())  # parameters and batch-norm statistics
    g_before = copy.deepcopy(m.nets["g"].state_dict())
    m.train()  # f stays in eval mode: its batch norm never updates its statistics
    assert not m.nets["f"].net.training
    for step in range(3):
        m.train_step({"real_a": torch.rand(2, 3, 16, 16) * 2 - 1, "real_b": torch.rand(2, 1, 16, 16) * 2 - 1}, step)
    assert all(p.grad is None and not p.requires_grad for p in m.nets["f"].parameters())
    for k, v in m.nets["f"].state_dict().items():
        assert torch.equal(v, f_before[k]), k
    # the f-constancy gradient reached g through the frozen f
    assert any(not torch.equal(v, g_before[k]) for k, v in m.nets["g"].state_dict().items() if v.is_floating_point())


def _script_f(path, image_size=16, channels=3, out=6):
    with quiet_jit():
        torch.jit.save(torch.jit.script(DigitF(channels, nef=4, f_dim=out, image_size=image_size).eval()), str(path))


def test_f_from_a_torchscript_file_travels_with_the_model(tmp_path):
    _script_f(tmp_path / "f.pt")
    m = get_model("dtn", f_source=str(tmp_path / "f.pt"), **TINY)
    assert m.nets["g"][0].in_channels == 6  # g decodes f's code size, read off the file's f
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = m.translate(x)
    m.save_pretrained(str(tmp_path / "saved"))
    exported = m.export()
    (tmp_path / "f.pt").unlink()  # the original f is gone: the saved and exported models do not need it
    loaded = I2IModel.from_pretrained(str(tmp_path / "saved"))
    assert loaded.config.f_source == os.path.join(str(tmp_path / "saved"), "f_source")
    for model in (loaded, exported, pickle.loads(pickle.dumps(m))):  # pickled: how Ray ships it to evaluation
        torch.testing.assert_close(model.translate(x), y, rtol=0, atol=0)
    assert set(exported.nets) == {"f", "g"}


def test_missing_or_wrong_f_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"f_source .*nope\.pt.*no such file.*never downloaded"):
        get_model("dtn", f_source=str(tmp_path / "nope.pt"), **TINY)
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match=r"bad\.pt.* is not a TorchScript file"):
        get_model("dtn", f_source=str(tmp_path / "bad.pt"), **TINY)
    _script_f(tmp_path / "f32.pt", image_size=32)  # an f of 32 px images: a 16 px DTN's f gives a 3×3 map
    with pytest.raises(ValueError, match=r"f must output a code \(N, d\) or \(N, d, 1, 1\)"):
        get_model("dtn", f_source=str(tmp_path / "f32.pt"), **{**TINY, "image_size": 64})


def test_translates_source_to_target_only():
    m = get_model("dtn", **TINY).eval()
    y = m.translate(torch.zeros(2, 3, 16, 16))
    assert y.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"DTN translates one way, source → target \(a2b: g\(f\(x\)\)\); it has no "
                                         r"'b2a'"):
        m.translate(torch.zeros(2, 1, 16, 16), direction="b2a")

import pytest
import torch
from torch import nn

from i2i_models.base import RunLength
from i2i_models.registry import get_model

TINY = dict(dim=8, n_res=2, mlp_dim=16, dis_dim=8, dis_n_layer=3)


def count(net):
    return sum(p.numel() for p in net.parameters())


def images(n=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def batch():
    return {"real_a": images(seed=1), "real_b": images(seed=2)}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return get_model("munit", **TINY)


def test_standard_config_matches_the_authors_parameter_counts():
    m = get_model("munit")
    for d in ("a", "b"):
        gen = m.nets[f"gen_{d}"]
        assert count(gen) == 15_026_187
        assert count(gen.enc_style) == 2_764_936
        assert count(gen.enc_content) == 5_385_856
        assert count(gen.dec) == 5_754_627
        assert count(gen.mlp) == 1_120_768
        assert count(m.nets[f"dis_{d}"]) == 8_271_171
        assert all(count(s) == 2_757_057 for s in m.nets[f"dis_{d}"].scales)
    assert set(m.nets) == {"gen_a", "gen_b", "dis_a", "dis_b"}
    m.setup_optimizers()
    for opt in m.optimizers.values():
        assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.999)
        assert opt.defaults["weight_decay"] == 1e-4


def test_authors_defaults(tiny):
    assert tiny.data_mode == "unpaired" and tiny.multimodal
    assert tiny.loss_weights == {"gan": 1.0, "recon_x": 10.0, "recon_s": 1.0, "recon_c": 1.0, "recon_x_cyc": 0.0,
                                 "vgg": 0.0, "d_gan": 1.0}
    c = get_model("munit").config
    assert (c.dim, c.style_dim, c.n_downsample, c.n_downsample_style, c.n_res, c.mlp_dim, c.mlp_layers) == \
        (64, 8, 2, 4, 4, 256, 3)
    assert (c.activ, c.pad_type, c.gan_mode, c.step_size, c.gamma, c.n_iters) == \
        ("relu", "reflect", "lsgan", 100_000, 0.5, 1_000_000)
    assert type(tiny).run_length(c) == RunLength("iterations", 1_000_000)
    assert tiny.lr_factor(step=99_998, epoch=0) == 1 and tiny.lr_factor(step=99_999, epoch=0) == 0.5


def test_seeds_give_reproducible_different_styles(tiny):
    x = images(n=2)
    assert torch.equal(tiny.translate(x, seed=1), tiny.translate(x, seed=1))
    assert not torch.allclose(tiny.translate(x, seed=1), tiny.translate(x, seed=2))
    torch.manual_seed(3)
    a = tiny.translate(x)  # no condition: the global RNG
    torch.manual_seed(3)
    assert torch.equal(a, tiny.translate(x))


def test_reference_guided_translation(tiny):
    x, ref1, ref2 = images(n=2), images(seed=5), images(seed=6)
    by_ref1 = tiny.translate(x, reference=ref1)  # one reference: its style for every input
    assert not torch.allclose(by_ref1, tiny.translate(x, seed=1))
    assert not torch.allclose(by_ref1, tiny.translate(x, reference=ref2))
    style = tiny.nets["gen_b"].enc_style(ref1)  # the target domain's style encoder
    assert torch.allclose(by_ref1, tiny.translate(x, style=style.flatten(1)))
    with pytest.raises(ValueError, match="at most one of seed, reference, style"):
        tiny.translate(x, seed=1, reference=ref1)
    with pytest.raises(ValueError, match="give 1 or 2"):
        tiny.translate(x, style=torch.zeros(3, 8))


def test_translate_direction_and_unknown_condition(tiny):
    x, s = images(n=2), torch.randn(2, 8)
    gen_a, gen_b = tiny.nets["gen_a"], tiny.nets["gen_b"]
    with torch.no_grad():
        assert torch.allclose(tiny.translate(x, style=s), gen_b.decode(gen_a.enc_content(x), s.view(2, 8, 1, 1)))
        assert torch.allclose(tiny.translate(x, style=s, direction="b2a"),
                              gen_a.decode(gen_b.enc_content(x), s.view(2, 8, 1, 1)))
    with pytest.raises(ValueError, match="direction"):
        tiny.translate(x, direction="b2c")
    with pytest.raises(TypeError, match="domain"):
        tiny.translate(x, domain=1)


def gen_a_calls(m):
    calls = []
    m.nets["gen_a"].register_forward_pre_hook(lambda mod, a, kw: calls.append(kw["op"]), with_kwargs=True)
    return calls


def test_zero_weight_terms_are_not_computed():
    # defaults: recon_x_cyc = vgg = 0 → gen_a encodes x_a, x_ba; decodes x_ba, x_a_recon; no feature net needed
    for w, decodes in (({}, 2), ({"recon_x_cyc": 10.0}, 3)):
        torch.manual_seed(0)
        m = get_model("munit", loss_weights=w, **TINY)
        m.setup_optimizers()
        calls = gen_a_calls(m)
        out = m.train_step(batch(), 0)
        assert (calls.count("encode"), calls.count("decode")) == (2, decodes)
        assert set(out.losses) == {t.name for t in m.loss_terms}
        assert out.losses["vgg"].item() == 0.0
        assert (out.losses["recon_x_cyc"].item() > 0) == ("recon_x_cyc" in w)


def test_vgg_term_needs_a_supplied_feature_net():
    m = get_model("munit", loss_weights={"vgg": 1.0}, **TINY)
    m.setup_optimizers()
    with pytest.raises(RuntimeError, match=r"vgg_weights.*set_perceptual_net"):
        m.train_step(batch(), 0)
    with pytest.raises(FileNotFoundError, match="vgg_weights"):
        get_model("munit", vgg_weights="/nonexistent/vgg16.pth", **TINY)
    torch.manual_seed(0)
    m.set_perceptual_net(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()))
    out = m.train_step(batch(), 0)
    assert out.losses["vgg"].item() > 0
    assert not any(k.startswith("_perceptual") for k in m.state_dict())  # not part of the model's weights


def test_bf16_autocast_path():
    m = get_model("munit", **TINY)
    m.amp_dtype = torch.bfloat16
    m.setup_optimizers()
    out = m.train_step(batch(), 0)
    assert all(torch.isfinite(v) for v in out.losses.values()) and out.images["fake_b"].dtype == torch.float32
    assert m.translate(images(), seed=0).dtype == torch.float32

import dataclasses

import pytest
import torch

from i2i_models import losses
from i2i_models.base import RunLength, unwrap
from i2i_models.blocks.image_pool import ImagePool
from i2i_models.cyclegan import CycleGAN, CycleGANConfig
from i2i_models.discogan_dualgan import DiscoGAN, DualGAN
from i2i_models.registry import get_model

TINY = dict(image_size=32, ngf=8, ndf=8, n_blocks=2)


def count(net):
    return sum(p.numel() for p in net.parameters())


def batch(n=2, size=32, seed=0, channels=(3, 3)):
    g = torch.Generator().manual_seed(seed)
    return {"real_a": torch.rand(n, channels[0], size, size, generator=g) * 2 - 1,
            "real_b": torch.rand(n, channels[1], size, size, generator=g) * 2 - 1}


@pytest.fixture(scope="module")
def standard():
    return get_model("cyclegan")  # resnet_9blocks, ngf 64, instance norm; basic PatchGAN on 3 channels


def test_standard_configs_match_the_authors_parameter_counts(standard):
    m = standard
    assert [count(m.nets[k]) for k in ("G_ab", "G_ba", "D_a", "D_b")] == [11_378_179] * 2 + [2_764_737] * 2
    assert count(get_model("cyclegan", image_size=128).nets["G_ab"]) == 7_837_699  # resnet_6blocks for 128 px
    assert m.config.blocks() == 9 and CycleGANConfig(n_blocks=6, image_size=512).blocks() == 6
    # the presets keep these networks: no architecture field differs (test_presets_differ_…)


def test_paper_defaults(standard):
    m = standard
    assert m.loss_weights == {"gan_ab": 1.0, "gan_ba": 1.0, "cycle": 10.0, "idt": 5.0,
                              "d_a_real": 0.5, "d_a_fake": 0.5, "d_b_real": 0.5, "d_b_fake": 0.5}
    c = m.config
    assert (c.gan_mode, c.norm, c.pool_size, c.dropout, c.n_critic, c.clip_D) == ("lsgan", "instance", 50, False, 1,
                                                                                   None)
    opts = m.configure_optimizers()
    assert set(opts) == set(m.nets) == {"G_ab", "G_ba", "D_a", "D_b"}
    for opt in opts.values():
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)
        assert opt.defaults["weight_decay"] == 0
    assert CycleGAN.run_length(c) == RunLength("epochs", 200)  # 100 + 100 linear decay, stepped per epoch
    lr = lambda epoch: m.lr_factor(step=0, epoch=epoch)  # noqa: E731
    assert lr(0) == lr(98) == 1.0 and lr(99) == pytest.approx(1 - 1 / 101) and lr(199) == 0.0  # the authors' epoch 200
    w = [p for p in m.nets["G_ab"].parameters() if p.dim() == 4][1]
    assert abs(w.std().item() - 0.02) < 0.002  # N(0, 0.02)


def test_image_pool_size_zero_passes_through_detached():
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    out = ImagePool(0).query(x * 1)
    assert torch.equal(out, x) and not out.requires_grad


def test_image_pool_mixes_stored_and_new_images():
    pool, g = ImagePool(50), torch.Generator().manual_seed(0)
    first = torch.arange(50.0).view(50, 1, 1, 1).expand(50, 3, 4, 4).requires_grad_()
    assert torch.equal(pool.query(first, generator=g), first)  # filling: stored and returned as they are
    new = (1000 + torch.arange(200.0)).view(200, 1, 1, 1).expand(200, 3, 4, 4).requires_grad_()
    out = pool.query(new, generator=g)
    assert out.shape == new.shape and not out.requires_grad and len(pool) == 50  # never more than asked
    ids = out[:, 0, 0, 0]
    returned_new = ids == 1000 + torch.arange(200.0)
    assert 60 < int(returned_new.sum()) < 140  # p = 1/2 each
    old = ids[~returned_new]
    assert ((old < 50) | (old >= 1000)).all() and (old < 50).any()  # the rest come from the history
    assert sum(int(t[0, 0, 0]) >= 1000 for t in pool.images) > 0  # … and new images replaced them
    small = ImagePool(3)
    assert small.query(torch.rand(5, 3, 4, 4)).shape == (5, 3, 4, 4) and len(small) == 3


def g_calls(model):
    calls = {"n": 0}
    for k in ("G_ab", "G_ba"):
        model.nets[k].register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    return calls


def test_identity_term_and_its_zero_weight():
    torch.manual_seed(0)
    m = get_model("cyclegan", **TINY)
    m.setup_optimizers()
    calls = g_calls(m)
    assert m.train_step(batch(), 0).losses["idt"] > 0 and calls["n"] == 6  # 4 for the cycles + 2 identity
    off = get_model("cyclegan", loss_weights={"idt": 0}, **TINY)
    off.setup_optimizers()
    calls = g_calls(off)
    assert off.train_step(batch(), 0).losses["idt"] == 0 and calls["n"] == 4  # skipped, as the authors do
    gray = get_model("cyclegan", in_channels=1, **TINY)  # G_ab(b) undefined for 1 → 3 channels: skipped
    gray.setup_optimizers()
    assert not gray.identity_on and gray.loss_weights["idt"] == 5
    out = gray.train_step(batch(channels=(1, 3)), 0)
    assert out.losses["idt"] == 0 and out.images["fake_b"].shape[1] == 3 and out.images["fake_a"].shape[1] == 1


def test_cycle_and_gan_terms_equal_the_direct_computation():
    torch.manual_seed(0)
    m = get_model("cyclegan", **TINY)
    m.setup_optimizers()
    b = batch()
    a, bb = b["real_a"], b["real_b"]
    G_ab, G_ba, D_a, D_b = (m.nets[k] for k in ("G_ab", "G_ba", "D_a", "D_b"))
    with torch.no_grad():  # before the step: the terms are computed on these weights
        cycle = (G_ba(G_ab(a)) - a).abs().mean() + (G_ab(G_ba(bb)) - bb).abs().mean()
        gan_ab = ((D_b(G_ab(a)) - 1) ** 2).mean()
        idt = (G_ab(bb) - bb).abs().mean() + (G_ba(a) - a).abs().mean()
        d_a_real = ((D_a(a) - 1) ** 2).mean()
    out = m.train_step(b, 0).losses
    assert out["cycle"] == pytest.approx(cycle.item(), rel=1e-5)
    assert out["gan_ab"] == pytest.approx(gan_ab.item(), rel=1e-5)
    assert out["idt"] == pytest.approx(idt.item(), rel=1e-5)
    assert out["d_a_real"] == pytest.approx(d_a_real.item(), rel=1e-5)  # the G step does not touch D
    g_total = m.weighted(out, "G_ab") + m.weighted(out, "G_ba")
    assert g_total == pytest.approx((out["gan_ab"] + out["gan_ba"] + 10 * cycle + 5 * idt).item(), rel=1e-5)


def test_translate_directions_use_their_generators():
    torch.manual_seed(0)
    m = get_model("cyclegan", in_channels=1, **TINY)
    a, b = torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.translate(a), unwrap(m.nets["G_ab"])(a))
        assert torch.equal(m.translate(a, direction="a2b"), m.translate(a))
        assert torch.equal(m.translate(b, direction="b2a"), unwrap(m.nets["G_ba"])(b))
    assert m.translate(a).shape[1] == 3 and m.translate(b, direction="b2a").shape[1] == 1
    with pytest.raises(ValueError, match="direction must be 'a2b' or 'b2a', got 'ab'"):
        m.translate(a, direction="ab")
    with pytest.raises(TypeError, match=r"unknown condition\(s\) \['seed'\]"):
        m.translate(a, seed=0)
    with pytest.raises(ValueError, match=r"'b2a' takes \(N, 3, H, W\)"):
        m.translate(a, direction="b2a")


def config_diff(cls):
    base, preset = dataclasses.asdict(CycleGANConfig()), dataclasses.asdict(cls.Config())
    return {k: v for k, v in preset.items() if base[k] != v}


def weight_diff(name):
    base = get_model("cyclegan", **TINY).loss_weights
    return {k: v for k, v in get_model(name, **TINY).loss_weights.items() if base[k] != v}


def test_presets_differ_from_cyclegan_only_in_their_declared_settings():
    assert config_diff(DiscoGAN) == dict(gan_mode="vanilla", recon="mse", pool_size=0, weight_decay=1e-5,
                                         n_epochs=200, n_epochs_decay=0, lr_policy="constant")
    assert weight_diff("discogan") == {"cycle": 1.0, "idt": 0.0}
    assert config_diff(DualGAN) == dict(gan_mode="wgan", clip_D=0.01, n_critic=2, pool_size=0, optimizer="rmsprop",
                                        lr=5e-5, n_epochs=50, n_epochs_decay=0, lr_policy="constant")
    assert weight_diff("dualgan") == {"cycle": 1000.0, "idt": 0.0, "d_a_real": 1.0, "d_a_fake": 1.0,
                                      "d_b_real": 1.0, "d_b_fake": 1.0}
    for cls in (DiscoGAN, DualGAN):  # no behaviour of their own: only data
        assert issubclass(cls, CycleGAN) and issubclass(cls.Config, CycleGANConfig)
        assert {k for k, v in vars(cls).items() if callable(v) and k != "Config"} == set()
        assert [(t.name, t.group) for t in cls.loss_terms] == [(t.name, t.group) for t in CycleGAN.loss_terms]
    assert DiscoGAN.run_length(DiscoGAN.Config()) == RunLength("epochs", 200)
    assert DualGAN.run_length(DualGAN.Config()) == RunLength("epochs", 50)
    for name, last in (("discogan", 199), ("dualgan", 49)):  # constant rate, to the last epoch
        assert get_model(name, **TINY).lr_factor(step=0, epoch=last) == 1.0


def test_dualgan_clips_its_critics_and_steps_g_every_n_critic():
    torch.manual_seed(0)
    m = get_model("dualgan", **TINY)
    m.setup_optimizers()
    assert all(isinstance(o, torch.optim.RMSprop) and o.defaults["lr"] == 5e-5 for o in m.optimizers.values())
    m.train_step(batch(), 0)  # G and D step
    for k in ("D_a", "D_b"):
        assert all(p.abs().max() <= 0.01 for p in m.nets[k].parameters())
    g_before = {k: p.clone() for k, p in m.nets["G_ab"].named_parameters()}
    d_before = {k: p.clone() for k, p in m.nets["D_b"].named_parameters()}
    out = m.train_step(batch(seed=1), 1)  # critic-only step
    assert all(torch.equal(p, g_before[k]) for k, p in m.nets["G_ab"].named_parameters())
    assert any(not torch.equal(p, d_before[k]) for k, p in m.nets["D_b"].named_parameters())
    assert all(torch.isfinite(v) for v in out.losses.values())
    with pytest.raises(ValueError, match="clip_D"):
        get_model("cyclegan", gan_mode="wgan")


def test_wgan_loss():
    pred = torch.tensor([1.0, 3.0])
    assert losses.adversarial(pred, True, "wgan") == -2 and losses.adversarial(pred, False, "wgan") == 2
    assert losses.adversarial(pred, True, "wgan", for_discriminator=False) == -2


def test_bf16_autocast_path():
    m = get_model("cyclegan", **TINY)
    m.amp_dtype = torch.bfloat16
    m.setup_optimizers()
    out = m.train_step(batch(), 0)
    assert all(torch.isfinite(v) for v in out.losses.values()) and out.images["fake_b"].dtype == torch.float32
    assert m.translate(torch.rand(1, 3, 32, 32), direction="b2a").dtype == torch.float32


# --- the code variants: the authors' code recipes ----------------------------------------------------------------
def _snapshot(m, prefix):
    return {k: p.clone() for k, p in m.nets.named_parameters() if k.startswith(prefix)}


def _moved(m, before):
    return any(not torch.equal(p, before[k]) for k, p in m.nets.named_parameters() if k in before)


def test_discogan_code_alternates_d_and_g_and_follows_its_curriculum():
    torch.manual_seed(0)
    m = get_model("discogan_code", **TINY)
    assert m.loss_weights == {"gan_ab": 0.1, "gan_ba": 0.1, "cycle": 1.0, "idt": 0.0, "d_a_real": 0.5,
                              "d_a_fake": 0.5, "d_b_real": 0.5, "d_b_fake": 0.5, "fm_ab": 0.9, "fm_ba": 0.9}
    assert [m.rate(s) for s in (0, 9_999, 10_000)] == [0.01, 0.01, 0.5]  # the code's --gan_curriculum
    m.setup_optimizers()
    for step, trains in ((0, "D"), (1, "G"), (2, "G"), (3, "D")):  # D on every 3rd iteration, G on the others
        g, d = _snapshot(m, "G_"), _snapshot(m, "D_")
        out = m.train_step(batch(seed=step), step)
        assert (_moved(m, g), _moved(m, d)) == (trains == "G", trains == "D")
        assert out.losses["fm_ab"] > 0 and out.losses["fm_ba"] > 0

    def g_after_one_g_step(step, **config):
        torch.manual_seed(0)
        model = get_model("discogan_code", **TINY, **config)
        model.setup_optimizers()
        model.train_step(batch(), step)
        return [p.detach().clone() for p in model.nets["G_ab"].parameters()]

    differs = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
    assert differs(g_after_one_g_step(1), g_after_one_g_step(10_001))  # r 0.01 vs 0.5: another G update …
    assert not differs(g_after_one_g_step(1, gan_curriculum=0), g_after_one_g_step(10_001))  # … only through r


def test_dualgan_code_penalises_the_gradient_and_steps_g_after_d_on_the_same_batch():
    torch.manual_seed(0)
    m = get_model("dualgan_code", **TINY)
    assert m.loss_weights["cycle"] == 500 and m.loss_weights["d_a_gp"] == m.loss_weights["d_b_gp"] == 10
    assert m.config.clip_D is None and m.config.n_critic == 1 and m.config.gan_mode == "wgan"
    m.setup_optimizers()
    g, d = _snapshot(m, "G_"), _snapshot(m, "D_")
    out = m.train_step(batch(), 0)
    assert _moved(m, g) and _moved(m, d) and out.losses["d_a_gp"] > 0
    assert any(p.abs().max() > 0.01 for p in m.nets["D_b"].parameters())  # no clipping: the penalty constrains
    # the G loss was taken against the critic after its step (the code's run_optim: D first, then G)
    with torch.no_grad():
        against_updated = -m.nets["D_b"](out.images["fake_b"]).mean()
    torch.testing.assert_close(out.losses["gan_ab"], against_updated, rtol=1e-5, atol=1e-6)


def test_gradient_penalty_matches_the_analytic_value():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 2)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731  ∇_x critic = w everywhere → GP = (‖w‖ − 1)²
    gp = losses.gradient_penalty(critic, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    torch.testing.assert_close(gp, (torch.sqrt(1e-8 + w.pow(2).sum()) - 1) ** 2)

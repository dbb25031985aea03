import math

import pytest
import torch

from i2i_models import losses
from i2i_models.base import RunLength, unwrap
from i2i_models.registry import get_model

TINY = dict(dim=8, n_res=2, dis_dim=8, dis_n_layer=3)
RES_BLOCK_256 = 2 * (256 * 256 * 9 + 256)  # two 3×3 convs with bias


def count(net):
    return sum(p.numel() for p in net.parameters())


def images(n=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def standard():
    return get_model("unit")


def test_standard_config_matches_the_authors_parameter_counts(standard):
    for d in ("a", "b"):
        gen, dis = standard.nets[f"gen_{d}"], standard.nets[f"dis_{d}"]
        assert count(gen) == 11_140_483
        assert count(gen.enc) == 5_385_856 and count(gen.dec) == 5_754_627
        assert count(dis) == 8_271_171 and len(dis.scales) == 3
        assert all(count(s) == 2_757_057 for s in dis.scales)
    assert set(standard.nets) == {"gen_a", "gen_b", "dis_a", "dis_b"}


def test_authors_defaults(standard):
    m = standard
    assert m.data_mode == "unpaired" and not m.multimodal
    assert m.loss_weights == {"gan": 1.0, "recon_x": 10.0, "recon_kl": 0.01, "recon_x_cyc": 10.0,
                              "recon_kl_cyc": 0.01, "d_gan": 1.0}
    c = m.config
    assert (c.dim, c.n_downsample, c.n_res, c.activ, c.pad_type, c.gan_mode) == (64, 2, 4, "relu", "reflect", "lsgan")
    assert (c.dis_dim, c.dis_n_layer, c.dis_num_scales) == (64, 4, 3) and not c.share_latent_layers
    m.setup_optimizers()
    assert set(m.optimizers) == set(m.nets)  # one Adam per net, the same settings: the authors' two Adams
    for opt in m.optimizers.values():
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.999)
        assert opt.defaults["weight_decay"] == 1e-4
    # 1M iterations, ×0.5 every 100k, a function of the step whatever the epoch: the authors' StepLR is stepped
    # before each iteration, so iteration 99,999 (the 100,000th) is the first at half the rate
    assert type(m).run_length(c) == RunLength("iterations", 1_000_000)
    lr = [m.lr_factor(step=s, epoch=7) for s in (0, 99_998, 99_999, 199_998, 199_999, 999_999)]
    assert lr == [1, 1, 0.5, 0.5, 0.25, 0.5**10]
    assert m.lr_factor(step=5, epoch=0) == m.lr_factor(step=5, epoch=99) == 1.0
    # init: kaiming (fan_in, gain √2) for G, N(0, 0.02) for D
    first_g = unwrap(m.nets["gen_a"]).enc.model[0][1].weight  # conv7, 3 → 64
    assert abs(first_g.std().item() - math.sqrt(2 / (3 * 49))) < 0.02
    first_d = m.nets["dis_a"].scales[0][0][1].weight
    assert abs(first_d.std().item() - 0.02) < 0.003


def test_share_latent_layers_ties_the_high_level_blocks(standard):
    shared = get_model("unit", share_latent_layers=True)
    assert shared.latent_layers("a")[0] is shared.latent_layers("b")[0]  # E_H
    assert shared.latent_layers("a")[1] is shared.latent_layers("b")[1]  # G_H
    assert standard.latent_layers("a")[0] is not standard.latent_layers("b")[0]
    assert count(shared.nets["gen_shared"]) == 2 * RES_BLOCK_256
    assert count(shared.nets["gen_a"]) == 11_140_483 - 2 * RES_BLOCK_256
    assert count(shared.nets) == count(standard.nets) - 2 * RES_BLOCK_256  # one copy instead of two
    assert "gen_shared" in shared.inference_nets


def test_shared_model_trains_and_translates():
    torch.manual_seed(0)
    m = get_model("unit", share_latent_layers=True, **TINY)
    m.setup_optimizers()
    before = {k: p.clone() for k, p in m.nets["gen_shared"].named_parameters()}
    out = m.train_step({"real_a": images(seed=1), "real_b": images(seed=2)}, 0)
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert any(not torch.equal(p, before[k]) for k, p in m.nets["gen_shared"].named_parameters())
    exported = m.export()
    assert set(exported.nets) == {"gen_a", "gen_b", "gen_shared"}
    assert torch.allclose(exported.translate(images()), m.translate(images()), atol=1e-6)


def test_kl_term_is_the_mean_of_mu_squared():
    mu = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    assert losses.kl_unit_variance(mu).item() == pytest.approx((1 + 4 + 9 + 0) / 4)
    # the model's recon_kl is that of both encoders' outputs (the means), before the step updates them
    torch.manual_seed(0)
    m = get_model("unit", **TINY)
    m.setup_optimizers()
    x_a, x_b = images(seed=1), images(seed=2)
    gen_a, gen_b = m.nets["gen_a"], m.nets["gen_b"]
    with torch.no_grad():
        expected = losses.kl_unit_variance(gen_a.enc(x_a)) + losses.kl_unit_variance(gen_b.enc(x_b))
    out = m.train_step({"real_a": x_a, "real_b": x_b}, 0)
    assert out.losses["recon_kl"].item() == pytest.approx(expected.item(), rel=1e-5)


def decoder_calls(m):
    calls = []
    m.nets["gen_a"].register_forward_pre_hook(lambda mod, a, kw: calls.append(kw["op"]), with_kwargs=True)
    return calls


def test_zero_weight_terms_are_not_computed():
    weights = {"recon_x_cyc": 0.0, "recon_kl_cyc": 0.0}
    for w, encodes, decodes in (({}, 2, 3), (weights, 1, 2)):  # x_a, x_ba | x_ba, x_a_recon, x_aba
        m = get_model("unit", loss_weights=w, **TINY)
        m.setup_optimizers()
        calls = decoder_calls(m)
        out = m.train_step({"real_a": images(seed=1), "real_b": images(seed=2)}, 0)
        assert (calls.count("encode"), calls.count("decode")) == (encodes, decodes)
        assert set(out.losses) == {t.name for t in m.loss_terms}
        for k in w:
            assert out.losses[k].item() == 0.0


def test_translate_direction_and_conditions():
    torch.manual_seed(0)
    m = get_model("unit", **TINY)
    x = images(n=2)
    gen_a, gen_b = m.nets["gen_a"], m.nets["gen_b"]
    with torch.no_grad():
        assert torch.allclose(m.translate(x), gen_b.dec(gen_a.enc(x)))  # a2b is the default, and has no noise
        assert torch.allclose(m.translate(x, direction="b2a"), gen_a.dec(gen_b.enc(x)))
    assert not torch.allclose(m.translate(x, direction="a2b"), m.translate(x, direction="b2a"))
    with pytest.raises(ValueError, match="direction must be 'a2b' or 'b2a'"):
        m.translate(x, direction="x2y")
    with pytest.raises(TypeError, match="seed"):
        m.translate(x, seed=1)


def test_multiscale_discriminator_sees_three_scales():
    m = get_model("unit", **TINY)
    outs = m.nets["dis_a"](images(size=32))
    assert [tuple(o.shape[-2:]) for o in outs] == [(4, 4), (2, 2), (1, 1)]  # 32, 16, 8 px, 3 stride-2 layers each


def test_checkpoints_saved_with_the_epoch_based_schedule_still_load(tmp_path):
    """Before the step decay counted iterations, configs carried iters_per_epoch: from_pretrained drops it (only
    there: a user config with it is an unknown key, like any other)."""
    import json

    from i2i_models.base import I2IModel

    m = get_model("unit", **TINY)
    m.save_pretrained(str(tmp_path))
    desc = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**desc, "config": {**desc["config"], "iters_per_epoch": 10}}))
    loaded = I2IModel.from_pretrained(str(tmp_path))
    assert loaded.config == m.config
    with pytest.raises(KeyError, match=r"unknown config key\(s\) \['iters_per_epoch'\]"):
        get_model("unit", iters_per_epoch=10, **TINY)

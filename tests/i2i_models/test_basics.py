"""The single-domain families (ae, vae, gan, vae_gan, aae, avb, ali): standard parameter counts, the papers'
defaults, each objective against a hand computation on a tiny batch, reproducible sampling and deterministic
reconstruction. Tiny configs: 16 px, nz 8, 4 channels, one intra-op thread (conftest)."""

import math

import pytest
import torch
import torch.nn.functional as F

from i2i_models.base import RunLength
from i2i_models.blocks.dcgan import DCGANDiscriminator, DCGANGenerator
from i2i_models.registry import get_model
from i2i_models.single_base import kl_standard_normal

TINY = dict(image_size=16, nz=8, ngf=4, ndf=4)
SINGLE = ("ae", "vae", "gan")
ENCODERS = tuple(n for n in SINGLE if n != "gan")

# every network of every family at the standard configuration (64 px, nz 100, ngf = ndf = 64): the README table
STANDARD_COUNTS = {
    "ae": {"E": 3_576_676, "G": 3_576_704},
    "vae": {"E": 4_395_976, "G": 3_576_704},
    "gan": {"G": 3_576_704, "D": 2_765_568},
}


def count(net):
    return sum(p.numel() for p in net.parameters())


def images(n=3, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny(name, **overrides):
    torch.manual_seed(0)
    m = get_model(name, **{**TINY, **overrides})
    m.setup_optimizers()
    return m


@pytest.mark.parametrize("name", SINGLE)
def test_standard_configs_parameter_counts(name):
    m = get_model(name)
    assert {k: count(v) for k, v in m.nets.items()} == STANDARD_COUNTS[name]


def test_dcgan_networks_are_the_reference_ones():
    """pytorch/examples dcgan at nz 100, ngf = ndf = 64, 64 px: G 3,576,704 and D 2,765,568 parameters, convs
    without bias; 4×4 → 64×64 in four stride-2 transposed convs; fewer stages for smaller images."""
    G, D = DCGANGenerator(100), DCGANDiscriminator()
    assert (count(G), count(D)) == (3_576_704, 2_765_568)
    convs = [m for net in (G, D) for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert len(convs) == 10 and all(c.bias is None and c.kernel_size == (4, 4) for c in convs)
    assert G(torch.zeros(2, 100)).shape == (2, 3, 64, 64) and D(torch.zeros(2, 3, 64, 64)).shape == (2,)
    assert DCGANGenerator(8, ngf=4, image_size=16)(torch.zeros(1, 8)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(8, image_size=48)


@pytest.mark.parametrize("name", SINGLE)
def test_paper_defaults(name):
    m = get_model(name)
    c = m.config
    assert (m.data_mode, m.encodes) == ("single", name != "gan")
    assert (c.image_size, c.nz, c.ngf, c.ndf) == (64, 100, 64, 64)
    assert type(m).run_length(c) == RunLength("epochs", 25)
    m.setup_optimizers()
    assert set(m.optimizers) == set(m.nets)
    for opt in m.optimizers.values():
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5,
                                                                                                            0.999)
    conv = next(p for p in m.nets["G"].parameters() if p.dim() == 4)
    assert abs(conv.std().item() - 0.02) < 0.002  # N(0, 0.02)
    bn = next(mod for mod in m.nets["G"].modules() if isinstance(mod, torch.nn.BatchNorm2d))
    assert abs(bn.weight.mean().item() - 1) < 0.01 and bn.bias.abs().max() == 0  # N(1, 0.02), 0


def test_default_weights():
    assert get_model("ae", **TINY).loss_weights == {"recon": 1.0}
    assert get_model("vae", **TINY).loss_weights == {"kl": 1.0, "recon": 1.0}
    assert get_model("gan", **TINY).loss_weights == {"gan": 1.0, "d_real": 1.0, "d_fake": 1.0}


# --- each objective against a hand computation -------------------------------------------------------------------
def test_ae_recon_is_the_summed_squared_error():
    m = tiny("ae")
    x = images()
    with torch.no_grad():
        expected = ((m.nets["G"](m.nets["E"](x)) - x) ** 2).sum(dim=(1, 2, 3)).mean()
    out = m.train_step({"image": x}, 0).losses
    assert out["recon"] == pytest.approx(expected.item(), rel=1e-5)


def test_kl_of_a_known_gaussian():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    # sample 1: ½(1 + 1 − 0 − 1) + ½(0 + 4 − log 4 − 1); sample 2: N(0, I) itself, KL 0; mean over the batch
    expected = (0.5 + 0.5 * (3 - math.log(4.0)) + 0.0) / 2
    assert kl_standard_normal(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_vae_terms_are_the_negative_elbo_of_one_reparameterised_sample():
    m = tiny("vae")
    x = images()
    with torch.no_grad():
        mu, logvar = m.nets["E"](x).chunk(2, dim=1)
        torch.manual_seed(3)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = ((m.nets["G"](z) - x) ** 2).sum(dim=(1, 2, 3)).mean()
        kl = (0.5 * (mu**2 + logvar.exp() - logvar - 1)).sum(1).mean()
    torch.manual_seed(3)  # the same ε
    out = m.train_step({"image": x}, 0).losses
    assert out["kl"] == pytest.approx(kl.item(), rel=1e-5) and out["recon"] == pytest.approx(recon.item(), rel=1e-5)
    heavier = get_model("vae", loss_weights={"recon": 2.0}, **TINY)  # the weight is 1/(2σ_x²): one place
    assert heavier.weighted(out, "G") == pytest.approx(2 * out["recon"].item())


def test_gan_d_terms_and_the_non_saturating_g_loss():
    m = tiny("gan")
    x = images()
    torch.manual_seed(5)
    z = torch.randn(3, 8)
    with torch.no_grad():
        fake = m.nets["G"](z)
        d_real = -F.logsigmoid(m.nets["D"](x)).mean()  # −log D(x)
        d_fake = -torch.log1p(-torch.sigmoid(m.nets["D"](fake))).mean()  # −log(1 − D(G(z)))
    torch.manual_seed(5)  # the same z
    out = m.train_step({"image": x}, 0)
    assert out.losses["d_real"] == pytest.approx(d_real.item(), rel=1e-4)
    assert out.losses["d_fake"] == pytest.approx(d_fake.item(), rel=1e-4)
    torch.testing.assert_close(out.images["sample"], fake)
    with torch.no_grad():  # G's loss is −log D(G(z)) against the D after its step, not log(1 − D(G(z)))
        logits = m.nets["D"](fake)
    assert out.losses["gan"] == pytest.approx(-F.logsigmoid(logits).mean().item(), rel=1e-4)
    assert out.losses["gan"] > 0


# --- inference ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SINGLE)
def test_sample_is_reproducible_by_seed_whatever_the_global_rng(name):
    m = tiny(name)
    m.train_step({"image": images()}, 0)  # running statistics that are not the initial ones
    state = {k: v.clone() for k, v in m.nets.state_dict().items()}
    torch.manual_seed(1)
    a = m.sample(4, seed=11)
    torch.manual_seed(2)
    torch.rand(100)
    b = m.sample(4, seed=11)
    assert a.shape == (4, 3, 16, 16) and a.abs().max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, m.sample(4, seed=12))
    torch.testing.assert_close(m.sample(2, seed=11), a[:2], rtol=0, atol=1e-6)  # an image ignores its batch
    assert all(torch.equal(v, state[k]) for k, v in m.nets.state_dict().items())  # nothing updated
    assert all(mod.training for mod in m.nets.modules())  # modes restored


@pytest.mark.parametrize("name", ENCODERS)
def test_translate_is_a_deterministic_reconstruction(name):
    m = tiny(name)
    m.train_step({"image": images()}, 0)
    x = images(seed=1)
    y = m.translate(x)
    assert y.shape == x.shape
    torch.testing.assert_close(m.translate(x), y, rtol=0, atol=0)
    torch.testing.assert_close(m.translate(x[:1]), y[:1], rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="takes no conditions"):
        m.translate(x, seed=0)


def test_vae_reconstructs_through_the_posterior_mean():
    m = tiny("vae")
    x = images()
    E, G = m.nets["E"].eval(), m.nets["G"].eval()
    with torch.no_grad():
        expected = G(E(x)[:, :8])
    torch.testing.assert_close(m.translate(x), expected, rtol=0, atol=1e-6)


def test_gan_has_no_translate():
    m = tiny("gan")
    assert not m.encodes and m.inference_nets == ("G",)
    with pytest.raises(NotImplementedError, match=r"no encoder.*sample\(n, seed="):
        m.translate(images())

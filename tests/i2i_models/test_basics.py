"""The single-domain families (ae, vae, gan, vae_gan, aae, avb, ali): standard parameter counts, the papers'
defaults, each objective against a hand computation on a tiny batch, reproducible sampling and deterministic
reconstruction. Tiny configs: 16 px, nz 8, 4 channels, one intra-op thread (conftest)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from i2i_models.base import RunLength
from i2i_models.blocks.dcgan import DCGANDiscriminator, DCGANGenerator
from i2i_models.registry import get_model, get_model_class
from i2i_models.losses import kl_standard_normal

TINY = dict(image_size=16, nz=8, ngf=4, ndf=4)
TINY_EXTRA = {"vae_gan": dict(feature_layer=2), "aae": dict(d_hidden=16), "avb": dict(eps_dim=4, t_hidden=16, t_dim=8)}
SINGLE = ("ae", "vae", "gan", "vae_gan", "aae", "avb", "ali")
ENCODERS = tuple(n for n in SINGLE if n != "gan")

# every network of every family at the standard configuration (64 px, nz 100, ngf = ndf = 64): the README table
STANDARD_COUNTS = {
    "ae": {"E": 3_576_676, "G": 3_576_704},
    "vae": {"E": 4_395_976, "G": 3_576_704},
    "gan": {"G": 3_576_704, "D": 2_765_568},
    "vae_gan": {"E": 4_395_976, "G": 3_576_704, "D": 2_765_568},
    "aae": {"E": 3_576_676, "G": 3_576_704, "D": 1_103_001},
    "avb": {"E": 3_672_676, "G": 3_576_704, "T": 21_467_649},
    "ali": {"E": 4_395_976, "G": 3_576_704, "D": 9_366_785},
}


def count(net):
    return sum(p.numel() for p in net.parameters())


def images(n=3, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_config(name, **overrides):
    return {**TINY, **TINY_EXTRA.get(name, {}), **overrides}


def tiny(name, loss_weights=None, **overrides):
    torch.manual_seed(0)
    m = get_model(name, loss_weights=loss_weights, **tiny_config(name, **overrides))
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


DEFAULT_TERMS = {  # name: (the paper's / authors' default weight, the group whose weighted sum it enters)
    "ae": {"recon": (1.0, "G")},
    "vae": {"kl": (1.0, "E"), "recon": (1.0, "G")},
    "gan": {"gan": (1.0, "G"), "d_real": (1.0, "D"), "d_fake": (1.0, "D")},
    "vae_gan": {"kl": (1.0, "E"), "recon": (1.0, "E"), "recon_dec": (1e-6, "G"), "gan": (1.0, "G"),
                "d_real": (1.0, "D"), "d_fake": (1.0, "D"), "d_recon": (1.0, "D")},
    "aae": {"recon": (1.0, "G"), "gan": (1.0, "E"), "d_prior": (1.0, "D"), "d_code": (1.0, "D")},
    "avb": {"kl": (1.0, "E"), "recon": (1.0, "G"), "t_posterior": (1.0, "T"), "t_prior": (1.0, "T")},
    "ali": {"gan_x": (1.0, "G"), "gan_z": (1.0, "E"), "d_real": (1.0, "D"), "d_fake": (1.0, "D")},
}


@pytest.mark.parametrize("name", SINGLE)
def test_default_weights_and_groups(name):
    assert {t.name: (t.weight, t.group) for t in get_model_class(name).loss_terms} == DEFAULT_TERMS[name]


def test_family_defaults():
    config = lambda name: get_model_class(name).Config()  # noqa: E731
    assert config("aae").prior == "gaussian" and config("aae").d_hidden == 1000
    assert config("vae_gan").feature_layer == 3 and config("ali").d_dropout == 0.2
    assert (config("avb").eps_dim, config("avb").t_hidden, config("avb").t_dim) == (100, 1024, 1024)


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


def test_vae_gan_terms_are_the_hand_computation():
    m = tiny("vae_gan", feature_layer=2)
    x = images()
    E, G, D = m.nets["E"], m.nets["G"], m.nets["D"]
    with torch.no_grad():
        mu, logvar = E(x).chunk(2, dim=1)
        torch.manual_seed(3)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        z_p = torch.randn(3, 8)
        x_rec, x_p = G(z), G(z_p)
        dis_l = lambda img: D.features(img)[1][1]  # noqa: E731  the activation after D's 2nd stage
        recon = ((dis_l(x) - dis_l(x_rec)) ** 2).sum(dim=(1, 2, 3)).mean()
        gan = -F.logsigmoid(D(x_p)).mean() - F.logsigmoid(D(x_rec)).mean()
        d = dict(d_real=-F.logsigmoid(D(x)).mean(), d_fake=F.softplus(D(x_p)).mean(),
                 d_recon=F.softplus(D(x_rec)).mean())
        kl = kl_standard_normal(mu, logvar)
    torch.manual_seed(3)  # the same ε and z_p
    out = m.train_step({"image": x}, 0).losses
    expected = dict(kl=kl, recon=recon, recon_dec=recon, gan=gan, **d)
    assert {k: pytest.approx(v.item(), rel=1e-4) for k, v in expected.items()} == out


def _moved(m, net, **weights):
    """Whether ``net``'s parameters change in one step with these weights."""
    torch.manual_seed(0)
    model = get_model(m, loss_weights=weights, **tiny_config(m))
    model.setup_optimizers()
    before = [p.clone() for p in model.nets[net].parameters()]
    model.train_step({"image": images()}, 0)
    return any(not torch.equal(p, b) for p, b in zip(model.nets[net].parameters(), before))


def test_vae_gan_routes_each_term_to_its_network():
    """The paper's update rules: Enc on prior + feature reconstruction (no GAN), Dec on γ·reconstruction − GAN."""
    assert _moved("vae_gan", "E") and _moved("vae_gan", "G")
    assert not _moved("vae_gan", "E", kl=0, recon=0)  # GAN and recon_dec do not reach E
    assert not _moved("vae_gan", "G", recon_dec=0, gan=0)  # E's reconstruction does not reach G
    assert _moved("vae_gan", "G", recon_dec=1, gan=0)


def test_aae_d_tells_prior_samples_from_codes_and_e_fools_it():
    m = tiny("aae", loss_weights={"recon": 0})  # E unchanged by the reconstruction phase
    x = images()
    E_before = copy.deepcopy(m.nets["E"])
    with torch.no_grad():
        z = E_before(x)
        torch.manual_seed(4)
        z_prior = torch.randn(3, 8)
        d_prior = -F.logsigmoid(m.nets["D"](z_prior)).mean()  # prior samples are D's positives
        d_code = F.softplus(m.nets["D"](z)).mean()  # −log(1 − D(E(x)))
    torch.manual_seed(4)
    out = m.train_step({"image": x}, 0).losses
    assert out["d_prior"] == pytest.approx(d_prior.item(), rel=1e-5)
    assert out["d_code"] == pytest.approx(d_code.item(), rel=1e-5)
    with torch.no_grad():  # E's loss: −log D(E(x)) against the D after its step
        gan = -F.logsigmoid(m.nets["D"](z)).mean()
    assert out["gan"] == pytest.approx(gan.item(), rel=1e-5)
    full = tiny("aae")
    with torch.no_grad():
        recon = ((full.nets["G"](full.nets["E"](x)) - x) ** 2).sum(dim=(1, 2, 3)).mean()
    assert full.train_step({"image": x}, 0).losses["recon"] == pytest.approx(recon.item(), rel=1e-5)


def test_aae_prior_is_a_config_choice():
    gaussian, uniform = tiny("aae"), tiny("aae", prior="uniform")
    g = torch.Generator().manual_seed(0)
    zu = uniform.draw_prior(2000, generator=g)
    assert zu.min() >= -1 and zu.max() <= 1 and abs(zu.mean()) < 0.02 and abs(zu.var() - 1 / 3) < 0.02
    zg = gaussian.draw_prior(2000, generator=g)
    assert zg.abs().max() > 2 and abs(zg.var() - 1) < 0.05
    torch.manual_seed(4)
    expected = torch.rand(3, 8) * 2 - 1
    with torch.no_grad():
        d_prior = -F.logsigmoid(uniform.nets["D"](expected)).mean()
    torch.manual_seed(4)
    assert uniform.train_step({"image": images()}, 0).losses["d_prior"] == pytest.approx(d_prior.item(), rel=1e-5)
    with pytest.raises(ValueError, match="prior must be"):
        get_model("aae", **tiny_config("aae", prior="laplace"))


def test_avb_adversary_and_encoder_objectives_have_the_papers_signs():
    m = tiny("avb")
    x = images()
    torch.manual_seed(6)
    eps, z_prior = torch.randn(3, 4), torch.randn(3, 8)
    with torch.no_grad():
        z = m.nets["E"](x, eps)
        t_q, t_p = m.nets["T"](x, z), m.nets["T"](x, z_prior)
        recon = ((m.nets["G"](z) - x) ** 2).sum(dim=(1, 2, 3)).mean()
    torch.manual_seed(6)  # the same ε and z'
    out = m.train_step({"image": x}, 0).losses
    # T maximises E_q log σ(T) + E_p log(1 − σ(T)): minimises −log σ(T(x, z_q)) and −log(1 − σ(T(x, z_p)))
    assert out["t_posterior"] == pytest.approx(-F.logsigmoid(t_q).mean().item(), rel=1e-5)
    assert out["t_prior"] == pytest.approx(-torch.log1p(-torch.sigmoid(t_p)).mean().item(), rel=1e-4)
    # E and G maximise −T + log p(x|z): they minimise +T (the KL estimate) and −log p(x|z)
    assert out["kl"] == pytest.approx(t_q.mean().item(), rel=1e-5)
    assert out["recon"] == pytest.approx(recon.item(), rel=1e-5)


def test_avb_reconstructs_with_the_noise_at_zero():
    m = tiny("avb")
    x = images()
    E, G = m.nets["E"].eval(), m.nets["G"].eval()
    with torch.no_grad():
        expected = G(E(x, torch.zeros(3, 4)))
        assert not torch.allclose(G(E(x, torch.ones(3, 4))), expected)  # ε does enter the code
    torch.testing.assert_close(m.translate(x), expected, rtol=0, atol=1e-6)


def test_ali_discriminates_encoder_pairs_from_generator_pairs():
    m = tiny("ali", d_dropout=0.0)
    x = images()
    E, G, D = m.nets["E"], m.nets["G"], m.nets["D"]
    with torch.no_grad():
        mu, logvar = E(x).chunk(2, dim=1)
        torch.manual_seed(8)
        z_enc = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        z_prior = torch.randn(3, 8)
        x_gen = G(z_prior)
        t_enc, t_gen = D(x, z_enc), D(x_gen, z_prior)
    torch.manual_seed(8)
    out = m.train_step({"image": x}, 0).losses
    expected = dict(d_real=-F.logsigmoid(t_enc), d_fake=F.softplus(t_gen),  # (x, G_z(x)) real, (G_x(z), z) fake
                    gan_x=-F.logsigmoid(t_gen), gan_z=F.softplus(t_enc))  # the labels swapped for E and G
    assert {k: pytest.approx(v.mean().item(), rel=1e-5) for k, v in expected.items()} == out
    assert sum(isinstance(mod, torch.nn.Dropout) and mod.p == 0.2 for mod in tiny("ali").nets["D"].modules()) == 6


@pytest.mark.parametrize("name", SINGLE)
def test_bf16_autocast_path(name):
    """The switch the trainer flips on GPU; here on CPU, where torch.autocast supports bfloat16 too."""
    m = tiny(name)
    m.amp_dtype = torch.bfloat16
    out = m.train_step({"image": images()}, 0)
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert all(v.dtype == torch.float32 for v in out.images.values()) and m.sample(2, seed=0).dtype == torch.float32
    if m.encodes:
        assert m.translate(images()).dtype == torch.float32

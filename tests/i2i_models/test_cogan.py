"""CoGAN: the authors' counts, weight sharing that is really shared, the 2-class softmax objective by hand, and the
paper's translation by latent search (reduces the source reconstruction error, seeded, works under no_grad)."""

import copy

import pytest
import torch

from i2i_models.registry import get_model

TINY = dict(arch="conv64", image_size=16, in_channels=3, nz=8, ngf=4, ndf=4, translate_steps=3)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_standard_digits_counts_are_the_authors():
    m = get_model("cogan")  # the standard: the PyTorch port's CoGen28x28 / CoDis28x28, latent 100, 28×28×1
    G, D = m.nets["G"], m.nets["D"]
    assert (count(G), count(G.shared), count(G.head_a), count(G.head_b)) == (7_842_694, 7_833_476, 4_609, 4_609)
    assert (count(D), count(D.shared), count(D.first_a), count(D.first_b)) == (427_593, 426_553, 520, 520)
    opt = m.configure_optimizers()
    assert {k: (o.defaults["lr"], o.defaults["betas"], o.defaults["weight_decay"]) for k, o in opt.items()} == {
        k: (2e-4, (0.5, 0.999), 5e-4) for k in ("G", "D")}
    assert m.run_length(m.config).unit == "iterations" and m.run_length(m.config).value == 5_000
    convs = (G.shared[0][0], G.head_b[0], D.first_a[0], D.shared[-1])
    assert all(float(conv.bias[0]) == pytest.approx(0.1) for conv in convs)
    a, b = m.sample_pair(2, seed=0)  # the port's xavier init (bias 0.1) above
    assert a.shape == b.shape == (2, 1, 28, 28) and a.min() >= -1 and a.max() <= 1  # sigmoid mapped to [-1, 1]


def test_conv64_photo_counts_as_documented():
    m = get_model("cogan", arch="conv64", image_size=64, in_channels=3)
    G, D = m.nets["G"], m.nets["D"]
    assert (count(G), count(G.shared), count(G.head_a)) == (3_578_826, 3_572_676, 3_075)
    assert (count(D), count(D.shared), count(D.first_a)) == (2_776_071, 2_769_797, 3_137)
    assert m.sample_pair(1, seed=0)[1].shape == (1, 3, 64, 64)
    w = G.shared[1][0].weight  # N(0, 0.02) init, bias 0 (the Caffe CelebA filler; xavier left photos as noise)
    assert abs(float(w.std()) - 0.02) < 0.001 and float(G.shared[1][0].bias.abs().max()) == 0


def test_config_is_checked():
    with pytest.raises(ValueError, match="28×28"):
        get_model("cogan", image_size=32)
    with pytest.raises(ValueError, match="power of two"):
        get_model("cogan", arch="conv64", image_size=48)
    with pytest.raises(ValueError, match="'a2b' or 'b2a'"):
        get_model("cogan", **TINY).translate(torch.zeros(1, 3, 16, 16), direction="ab")


def test_shared_layers_are_one_parameter_object_used_by_both_domains():
    torch.manual_seed(0)
    m = get_model("cogan", **TINY).eval()
    G, D = m.nets["G"], m.nets["D"]
    z = torch.randn(2, 8)
    out_a, out_b = G(z)
    params = dict(G.named_parameters())

    def used(out):  # the parameter objects an output's value depends on (by autograd)
        grads = torch.autograd.grad(out.sum(), list(params.values()), allow_unused=True, retain_graph=True)
        return {n for n, g in zip(params, grads) if g is not None}

    shared = {n for n in params if n.startswith("shared.")}
    assert used(out_a) == shared | {n for n in params if n.startswith("head_a.")}
    assert used(out_b) == shared | {n for n in params if n.startswith("head_b.")}
    assert used(out_a) & used(out_b) == shared and len(shared) == 2 * 3  # 16 px: 2 layers × (weight, bias, slope)
    with torch.no_grad():  # a change of a shared weight is a change of both domains' generator
        G.shared[0][0].weight.add_(0.1)
        new_a, new_b = G(z)
    assert not torch.allclose(new_a, out_a) and not torch.allclose(new_b, out_b)
    x = torch.rand(2, 3, 16, 16)
    d_grads = torch.autograd.grad(D(x, x)[2:].sum(), list(D.parameters()), allow_unused=True)  # domain b's rows
    used_by_b = {n for (n, _), g in zip(D.named_parameters(), d_grads) if g is not None and g.abs().sum() > 0}
    assert used_by_b == {n for n, _ in D.named_parameters() if not n.startswith("first_a")}


def test_a_step_moves_the_shared_weights_once_for_both_domains():
    torch.manual_seed(0)
    m = get_model("cogan", **TINY)
    m.setup_optimizers()
    before = {k: v.clone() for k, v in m.nets.state_dict().items()}
    m.train_step(m.example_batch(4), 0)
    after = m.nets.state_dict()
    for prefix in ("G.shared.", "G.head_a.", "G.head_b.", "D.shared.", "D.first_a.", "D.first_b."):
        assert any(not torch.equal(before[k], v) for k, v in after.items() if k.startswith(prefix)), prefix


def _ce(logits: torch.Tensor, label: int) -> torch.Tensor:
    """2-class softmax cross-entropy by hand: mean over rows of log(e^l0 + e^l1) − l_label."""
    return (torch.log(logits.exp().sum(1)) - logits[:, label]).mean()


def test_losses_equal_the_hand_computed_softmax_objective():
    torch.manual_seed(3)
    m = get_model("cogan", **TINY)
    m.setup_optimizers()
    batch = m.example_batch(3)
    G0, D0 = copy.deepcopy(m.nets["G"]), copy.deepcopy(m.nets["D"])  # the nets before the step
    torch.manual_seed(11)
    out = m.train_step(batch, 0)
    torch.manual_seed(11)  # the same draws: z for the D step, then a fresh z' for the G step
    z, z2 = torch.randn(3, 8), torch.randn(3, 8)
    x_a, x_b = batch["real_a"], batch["real_b"]
    with torch.no_grad():
        fake_a, fake_b = G0(z)
        # both domains concatenated along the batch (one batch through the shared layers, their BN statistics
        # over both): domain a's rows, then domain b's, each through its own first layer
        real_logits = D0.shared(torch.cat([D0.first_a(x_a), D0.first_b(x_b)])).flatten(1)
        d_real = _ce(real_logits, 1)
        d_fake = _ce(D0(fake_a, fake_b), 0)
        gen_a, gen_b = G0(z2)
        gan = _ce(m.nets["D"](gen_a, gen_b), 1)  # against the updated D
    torch.testing.assert_close(out.losses["d_real"], d_real, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.losses["d_fake"], d_fake, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.losses["gan"], gan, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.images["fake_b"], gen_b)  # conv64: tanh, already in [-1, 1]


def test_digits_discriminator_sees_the_authors_pixel_range():
    """digits: the pipeline's [-1, 1] images reach D as (x + 1)/2 in [0, 1], as the authors' ToTensor images."""
    torch.manual_seed(0)
    m = get_model("cogan", ngf=4, ndf=4)
    m.setup_optimizers()
    batch = m.example_batch(2)
    D0 = copy.deepcopy(m.nets["D"])
    out = m.train_step(batch, 0)
    with torch.no_grad():
        expected = _ce(D0((batch["real_a"] + 1) / 2, (batch["real_b"] + 1) / 2), 1)
    torch.testing.assert_close(out.losses["d_real"], expected, rtol=1e-5, atol=1e-6)


def _trained_like_target(m):
    """Images the model can produce exactly: G_a(z_true) and G_b(z_true) in [-1, 1] (eval mode)."""
    return m.sample_pair(3, seed=123)


def test_latent_search_reduces_the_source_error_and_translates_to_the_other_domain():
    torch.manual_seed(0)
    m = get_model("cogan", **TINY, translate_lr=0.1)
    x_a, x_b = _trained_like_target(m)
    _, err0 = m.latent_search(x_a, domain="a", steps=0)
    z, err = m.latent_search(x_a, domain="a", steps=100)
    assert (err < 0.5 * err0).all(), (err0, err)
    with torch.no_grad():
        y = m.translate(x_a, direction="a2b", steps=100)
        back = m.translate(x_b, direction="b2a", steps=100)
    # G_b(z*) lands near the b image of the same z (what the coupling gives), nearer than another z's b image;
    # and b2a searches domain b: it lands near the a image
    assert (y - x_b).pow(2).mean() < (m.sample_pair(3, seed=999)[1] - x_b).pow(2).mean()
    assert (back - x_a).pow(2).mean() < (m.sample_pair(3, seed=999)[0] - x_a).pow(2).mean()
    assert y.shape == back.shape == x_a.shape


def test_translation_is_seeded_deterministic_and_per_image():
    torch.manual_seed(0)
    m = get_model("cogan", **TINY)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.manual_seed(1)
    y1 = m.translate(x, steps=5, seed=4)
    torch.manual_seed(2)  # the global RNG does not matter: the start is drawn from its own generator
    y2 = m.translate(x, steps=5, seed=4)
    assert torch.equal(y1, y2)
    assert not torch.allclose(m.translate(x, steps=5, seed=5), y1)
    # an image's result does not depend on the others in its batch (one start per seed, per-image gradients)
    torch.testing.assert_close(m.translate(x[1:2], steps=5, seed=4), y1[1:2], rtol=1e-4, atol=1e-5)


def test_translate_under_no_grad_leaves_the_networks_as_they_were():
    torch.manual_seed(0)
    m = get_model("cogan", **TINY)
    m.setup_optimizers()
    m.train_step(m.example_batch(2), 0)
    m.train()
    for opt in m.optimizers.values():
        opt.zero_grad(set_to_none=True)
    state = {k: v.clone() for k, v in m.nets.state_dict().items()}  # weights and BN running statistics
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():  # as validation, evaluation and the translate actors call it
        y = m.translate(x, direction="b2a")
    assert y.shape == (2, 3, 16, 16) and torch.isfinite(y).all() and not y.requires_grad
    assert all(p.grad is None and p.requires_grad for p in m.parameters())
    assert all(torch.equal(state[k], v) for k, v in m.nets.state_dict().items())
    assert all(mod.training for mod in m.nets.modules())  # train mode restored

"""Triangle GAN: the reference's exact counts, every term against a hand computation of the value function in the
authors' form (σ and log(· + 1e-8)), D2's labels, the two joint optimizers, the D:G schedule, semi-paired batches
with no pairs or no unpaired part, and both translation directions."""

import copy

import pytest
import torch
import torch.nn.functional as F

from i2i_models.registry import get_model
from i2i_models.triangle_gan import Conv2dSame

TINY_PHOTO = dict(arch="photo", image_size=16, in_channels=3, out_channels=3, ngf=4, ndf=4, n_blocks=1,
                  n_layers_D=2)


def count(net) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: more threads on a shared 2-core machine only contend
    yield
    torch.set_num_threads(threads)


def test_standard_config_counts_match_the_reference():
    m = get_model("triangle_gan")  # MNIST ↔ MNIST-transpose, 28×28×1
    assert {k: count(v) for k, v in m.nets.items()} == {"G_ab": 659_216, "G_ba": 659_216, "D1": 258_305,
                                                          "D2": 258_305}
    assert count(m.nets) == 1_835_042
    assert m.config.d_steps == 5 and m.config.lr == 1e-4 and m.config.beta1 == 0.5
    photo = get_model("triangle_gan", arch="photo", image_size=64, in_channels=3, out_channels=3)
    assert {k: count(v) for k, v in photo.nets.items()} == {"G_ab": 7_837_699, "G_ba": 7_837_699, "D1": 2_767_809,
                                                              "D2": 2_767_809}
    assert count(photo.nets) == 21_211_016


def test_tf_same_padding_puts_the_extra_pixel_after():
    conv = Conv2dSame(1, 1, 5, 2)
    x = torch.randn(1, 1, 28, 28)
    want = F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias, stride=2)  # TF: 3 pixels, 1 before, 2 after
    assert conv(x).shape[-2:] == (14, 14) and torch.allclose(conv(x), want)


def authors_form(model, batch):
    """The authors' L_D1, L_D2, L_G1, L_G2 term by term: D = σ(logit), every log(· + 1e-8), with the current nets."""
    G_ab, G_ba, D1, D2 = (model.nets[k] for k in ("G_ab", "G_ba", "D1", "D2"))
    x_p, y_p, x_u, y_u = batch["input"], batch["target"], batch["real_a"], batch["real_b"]

    def log(t):
        return torch.log(t + 1e-8)

    with torch.no_grad():
        y_gen, x_gen = G_ab(x_u), G_ba(y_u)
        d1_real, d1_fake_y, d1_fake_x = (torch.sigmoid(D1(a, b)) for a, b in ((x_p, y_p), (x_u, y_gen),
                                                                              (x_gen, y_u)))
        d2_real, d2_fake = torch.sigmoid(D2(x_u, y_gen)), torch.sigmoid(D2(x_gen, y_u))
    return {"d1_real": -log(d1_real).mean(), "d1_fake_ab": -log(1 - d1_fake_y).mean(),
            "d1_fake_ba": -log(1 - d1_fake_x).mean(), "d2_ab": -log(d2_real).mean(),
            "d2_ba": -log(1 - d2_fake).mean(), "gan1_ab": -log(d1_fake_y).mean(),
            "gan2_ab": -log(1 - d2_real).mean(),
            "gan1_ba": -log(d1_fake_x).mean(), "gan2_ba": -log(d2_fake).mean()}


@pytest.mark.parametrize("args", [dict(dropout=0.0), dict(TINY_PHOTO)], ids=["mnist", "photo"])
def test_each_term_is_the_value_function_as_the_authors_compute_it(args):
    torch.manual_seed(0)
    m = get_model("triangle_gan", d_steps=1, **args)
    m.setup_optimizers()
    batch = m.example_batch(3, generator=torch.Generator().manual_seed(1))
    before = copy.deepcopy(m)
    hand = authors_form(before, batch)
    # L_D1 = −mean[log D1(x_p, y_p) + log(1 − D1(x_u, ỹ)) + log(1 − D1(x̃, y_u))] = the sum of the three D1 terms
    assert set(hand) == {t.name for t in m.loss_terms}
    out = m.train_step(batch, 0)
    for k in ("d1_real", "d1_fake_ab", "d1_fake_ba", "d2_ab", "d2_ba"):  # the D step ran on the initial nets
        assert out.losses[k] == pytest.approx(hand[k].item(), rel=1e-5, abs=1e-6), k
    # the G step ran with the initial generators against the D after its step
    after_d = copy.deepcopy(before)
    for k in ("D1", "D2"):
        after_d.nets[k].load_state_dict(m.nets[k].state_dict())
    hand_g = authors_form(after_d, batch)
    for k in ("gan1_ab", "gan2_ab", "gan1_ba", "gan2_ba"):
        assert out.losses[k] == pytest.approx(hand_g[k].item(), rel=1e-5, abs=1e-6), k
    # the D step's objective is L_D1 + L_D2, the G step's L_G1 + L_G2: each term with weight 1
    assert m.weighted(out.losses, "D1") + m.weighted(out.losses, "D2") == pytest.approx(
        sum(hand[k] for k in ("d1_real", "d1_fake_ab", "d1_fake_ba", "d2_ab", "d2_ba")).item(), rel=1e-5)
    assert set(m.default_weights().values()) == {1.0}


def test_d2_labels_g_ab_pairs_one_and_g_ba_pairs_zero():
    """The code's D2 (= 1 − the paper's): a D2 that says 1 to every pair is right about G_ab's pairs (d2_ab ≈ 0),
    wrong about G_ba's (d2_ba large); G_ab then wants it to say 0 (gan2_ab large), G_ba is content (gan2_ba ≈ 0)."""
    m = get_model("triangle_gan", dropout=0.0, d_steps=1, lr=0.0)
    m.setup_optimizers()
    with torch.no_grad():
        m.nets["D2"].fc.weight.zero_()
        m.nets["D2"].fc.bias.fill_(10.0)  # D2 = σ(10) ≈ 1 for every pair
    out = m.train_step(m.example_batch(2, generator=torch.Generator().manual_seed(0)), 0).losses
    assert out["d2_ab"] < 1e-4 and out["gan2_ba"] < 1e-4
    assert out["d2_ba"] == pytest.approx(10.0, abs=1e-3) and out["gan2_ab"] == pytest.approx(10.0, abs=1e-3)


def test_two_joint_adams_and_the_d_to_g_schedule():
    m = get_model("triangle_gan", **TINY_PHOTO)  # d_steps 5: the MNIST script's schedule
    m.setup_optimizers()
    params = lambda *names: {id(p) for n in names for p in m.nets[n].parameters()}  # noqa: E731
    assert set(m.optimizers) == {"D", "G"}
    for group, nets in (("D", ("D1", "D2")), ("G", ("G_ab", "G_ba"))):
        opt = m.optimizers[group]
        assert {id(p) for g in opt.param_groups for p in g["params"]} == params(*nets)
        assert opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0.5, 0.999)
    m.train_step(m.example_batch(2, generator=torch.Generator().manual_seed(0)), 0)
    steps = {g: {int(s["step"]) for s in opt.state.values()} for g, opt in m.optimizers.items()}
    assert steps == {"D": {5}, "G": {1}}  # five D steps on the batch, then one G step; every net of each stepped

    # routing: with every G term weighted 0 only D1 and D2 move; with every D term weighted 0 only the Gs move
    for frozen, moved in ((("G_ab", "G_ba"), ("D1", "D2")), (("D1", "D2"), ("G_ab", "G_ba"))):
        zero = {t.name: 0.0 for t in m.loss_terms if t.group in frozen}
        torch.manual_seed(0)
        z = get_model("triangle_gan", loss_weights=zero, **{**TINY_PHOTO, "d_steps": 1})
        z.setup_optimizers()
        before = {k: [p.clone() for p in z.nets[k].parameters()] for k in z.nets}
        z.train_step(z.example_batch(2, generator=torch.Generator().manual_seed(0)), 0)
        changed = {k for k in z.nets if any(not torch.equal(a, b) for a, b in zip(before[k], z.nets[k].parameters()))}
        assert changed == set(moved), (frozen, changed)


def test_batches_without_pairs_or_without_unpaired_images():
    m = get_model("triangle_gan", **{**TINY_PHOTO, "d_steps": 1})
    m.setup_optimizers()
    full = m.example_batch(2, generator=torch.Generator().manual_seed(0))
    # no pairs: D1 learns from fake pairs only; d1_real is reported as 0
    out = m.train_step({"real_a": full["real_a"], "real_b": full["real_b"]}, 0).losses
    assert out["d1_real"] == 0 and set(out) == {t.name for t in m.loss_terms}
    # no unpaired part: the pairs' own x and y are the samples of p(x) and p(y)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    torch.manual_seed(3)
    only_pairs = a.train_step({"input": full["input"], "target": full["target"]}, 1).losses
    torch.manual_seed(3)
    spelled_out = b.train_step({**{k: full[k] for k in ("input", "target")}, "real_a": full["input"],
                                "real_b": full["target"]}, 1).losses
    assert only_pairs == spelled_out
    with pytest.raises(ValueError, match="needs pairs"):
        m.train_step({"real_a": full["real_a"]}, 2)


def test_translate_both_directions_deterministic_unless_test_time_dropout():
    torch.manual_seed(0)
    m = get_model("triangle_gan")
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(m.translate(x), m.nets["G_ab"].eval()(x))
        assert torch.equal(m.translate(x, direction="b2a"), m.nets["G_ba"].eval()(x))
    assert m.nets["G_ab"].train().training and torch.equal(m.translate(x), m.translate(x))
    assert m.nets["G_ab"].training  # modes restored
    assert m.translate(x).min() >= -1 and m.translate(x).max() <= 1  # 2σ − 1
    noisy = get_model("triangle_gan", test_time_dropout=True)
    assert not torch.equal(noisy.translate(x), noisy.translate(x))
    with pytest.raises(ValueError, match="direction"):
        m.translate(x, direction="sideways")
    with pytest.raises(TypeError, match="only `direction`"):
        m.translate(x, seed=1)
    with pytest.raises(ValueError, match="paired_fraction"):
        get_model("triangle_gan", paired_fraction=1.5)

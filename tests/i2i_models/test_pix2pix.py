import pytest
import torch

from i2i_models.base import RunLength
from i2i_models.registry import get_model


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_standard_config_matches_the_authors_parameter_counts():
    m = get_model("pix2pix")  # unet_256, ngf 64, batch norm, basic 70x70 PatchGAN on 6 channels
    assert count(m.nets["G"]) == 54_413_955
    assert count(m.nets["D"]) == 2_768_705
    assert count(get_model("pix2pix", image_size=128).nets["G"]) == 41_828_995  # unet_128
    assert count(get_model("pix2pix", netD="pixel").nets["D"]) == 9_024


def test_paper_defaults():
    m = get_model("pix2pix")
    assert m.loss_weights == {"gan": 1.0, "l1": 100.0, "d_real": 0.5, "d_fake": 0.5}
    m.setup_optimizers()
    opt = m.optimizers["G"]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)
    assert type(m).run_length(m.config) == RunLength("epochs", 200)
    # the authors' scheduler steps at the start of each epoch: 0-based epoch 98 (their 99) is the last at full rate,
    # epoch 99 (their 100) is already decayed, the last epoch 199 (their 200) trains at 0 — at every step of it
    lr = lambda epoch, step=0: m.lr_factor(step=step, epoch=epoch)  # noqa: E731
    assert lr(0) == lr(98) == lr(98, step=10**6) == 1.0 and lr(99) == pytest.approx(1 - 1 / 101)
    assert lr(150) == pytest.approx(1 - 52 / 101) and lr(198) == pytest.approx(1 / 101) and lr(199) == 0.0
    no_decay = get_model("pix2pix", image_size=32, ngf=8, ndf=8, n_epochs=1, n_epochs_decay=0)  # no decay phase:
    assert no_decay.lr_factor(step=0, epoch=0) == 1.0  # a constant rate, not the degenerate 1 − 1/1
    init = [p for n, p in m.nets["G"].named_parameters() if n.endswith("weight") and p.dim() == 4]
    assert abs(init[0].std().item() - 0.02) < 0.005  # N(0, 0.02)


def test_dropout_is_the_noise_at_test_time():
    torch.manual_seed(0)
    m = get_model("pix2pix", image_size=64, ngf=8, ndf=8)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert not torch.equal(m.translate(x), m.translate(x))  # the paper's test mode: dropout on
    det = get_model("pix2pix", image_size=64, ngf=8, ndf=8, test_time_dropout=False)
    assert torch.equal(det.translate(x), det.translate(x))


def test_lsgan_and_instance_norm_variants_train():
    m = get_model("pix2pix", image_size=32, ngf=8, ndf=8, gan_mode="lsgan", norm="instance")
    m.setup_optimizers()
    out = m.train_step({"input": torch.rand(1, 3, 32, 32), "target": torch.rand(1, 3, 32, 32)}, 0)
    assert all(torch.isfinite(v) for v in out.losses.values())


def test_bf16_autocast_path():
    """The switch the trainer flips on GPU; here on CPU, where torch.autocast supports bfloat16 too."""
    m = get_model("pix2pix", image_size=32, ngf=8, ndf=8)
    m.amp_dtype = torch.bfloat16
    m.setup_optimizers()
    out = m.train_step({"input": torch.rand(2, 3, 32, 32), "target": torch.rand(2, 3, 32, 32)}, 0)
    assert all(torch.isfinite(v) for v in out.losses.values()) and out.images["fake_b"].dtype == torch.float32
    assert m.translate(torch.rand(1, 3, 32, 32)).dtype == torch.float32


def _trained(**overrides):
    """A 64 px pix2pix (one dropout level) after a few steps in train mode, so its running statistics are not the
    initial ones and its weights no longer the init."""
    torch.manual_seed(0)
    m = get_model("pix2pix", image_size=64, ngf=8, ndf=8, **overrides)
    m.setup_optimizers()
    for step in range(3):
        m.train_step(m.example_batch(2, generator=torch.Generator().manual_seed(step)), step)
    return m


@pytest.mark.parametrize("test_norm", ["sample", "running"])
def test_an_images_output_does_not_depend_on_its_batch(test_norm):
    """evaluate/translate pass 16 images at once: each must get what it would get in any other batch (dropout on:
    the same seed gives the same masks for the same batch shape)."""
    m = _trained(test_norm=test_norm)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(9)) * 2 - 1
    outs = []
    for batch in (x[[0, 1]], x[[0, 2]], torch.cat([x[:1], -x[1:2]])):  # the same first image, different others
        torch.manual_seed(5)
        outs.append(m.translate(batch)[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=1e-6)


def test_test_norms_are_the_authors_test_modes():
    """"sample": what the authors' test.py computes (G in train mode, batch 1) for every image of any batch;
    "running": their --eval (G in eval mode). Compared without dropout, whose masks are random."""
    import copy

    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(9)) * 2 - 1
    per_sample = _trained(dropout=False)
    authors_g = copy.deepcopy(per_sample.nets["G"]).train()  # a copy: the authors' test updates its buffers
    batch_of_one = torch.cat([authors_g(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(per_sample.translate(x), batch_of_one, rtol=0, atol=1e-5)
    running = _trained(dropout=False, test_norm="running")
    torch.testing.assert_close(running.translate(x), copy.deepcopy(running.nets["G"]).eval()(x), rtol=0, atol=1e-6)
    assert not torch.allclose(running.translate(x), batch_of_one, atol=1e-3)  # the two modes do differ


@pytest.mark.parametrize("test_norm", ["sample", "running"])
def test_translate_never_changes_the_checkpointed_buffers(test_norm):
    """Validation translates while G is in train mode: the running statistics (saved in every checkpoint) and the
    modules' train/eval modes must come out as they went in."""
    m = _trained(test_norm=test_norm)
    G = m.nets["G"]
    assert G.training
    before = {k: v.clone() for k, v in G.state_dict().items()}
    modes = {n: mod.training for n, mod in G.named_modules()}
    m.translate(torch.rand(4, 3, 64, 64) * 2 - 1)
    for k, v in G.state_dict().items():
        assert torch.equal(v, before[k]), f"translate changed {k}"
    assert {n: mod.training for n, mod in G.named_modules()} == modes

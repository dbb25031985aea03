import pytest
import torch

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
    # constant for n_epochs, then linear decay to (almost) zero over n_epochs_decay
    assert m.lr_factor(0) == 1.0 and m.lr_factor(99) == 1.0 and m.lr_factor(100) == pytest.approx(1 - 1 / 101)
    assert m.lr_factor(199) == pytest.approx(1 / 101)
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

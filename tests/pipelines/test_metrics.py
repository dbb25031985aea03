import pytest
import torch

from pipelines import metrics


def test_paired_metrics_on_known_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    same = metrics.paired_means(metrics.paired_sums(x, x))
    assert same["l1"] == 0 and same["ssim"] == pytest.approx(1.0) and same["psnr"] > 60
    noisy = metrics.paired_means(metrics.paired_sums((x + 0.2).clamp(-1, 1), x))
    assert 0 < noisy["l1"] < 0.25 and noisy["ssim"] < 1 and 15 < noisy["psnr"] < 30


def test_fid_kid_with_the_seeded_feature_net():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(24, 3, 32, 32, generator=g) * 2 - 1
    d_same = metrics.Distribution("tiny", kid_subset_size=12)
    d_same.update(real, real=True)
    d_same.update(real, real=False)
    d_far = metrics.Distribution("tiny", kid_subset_size=12)
    d_far.update(real, real=True)
    d_far.update((real * 0.2 - 0.7), real=False)  # darker, flatter
    same, far = d_same.compute(), d_far.compute()
    assert abs(same["fid"]) < 1e-3 and far["fid"] > 10 * max(abs(same["fid"]), 1e-3) and far["kid"] > same["kid"]


def test_missing_inception_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        metrics.feature_net("inception")
    msg = str(e.value)
    assert metrics.INCEPTION_FILE in msg and metrics.INCEPTION_URL in msg and str(tmp_path) in msg
    with pytest.raises(FileNotFoundError, match="/nowhere/w.pth"):
        metrics.feature_net("inception", "/nowhere/w.pth")


def test_sample_grid_layout():
    cols = [torch.zeros(3, 3, 16, 16), torch.ones(3, 3, 16, 16), -torch.ones(3, 3, 16, 16)]
    im = metrics.sample_grid(cols)
    assert im.size == (3 * 18 + 2, 3 * 18 + 2)


def test_standard_inception_loads_from_the_torch_home_cache(tmp_path, monkeypatch):
    """Plumbing with a random state dict in the real layout, under the real file name (nothing downloaded)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with monkeypatch.context() as m:  # build the architecture once without any weights to get the layout
        m.setattr(torch, "load", lambda *a, **k: {})
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        layout = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
        state = layout.state_dict()
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / metrics.INCEPTION_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = metrics.feature_net("inception")
    assert net.use_antialias is False  # parity with the usual FID code
    feats = net(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8))
    assert feats.shape == (2, 2048)

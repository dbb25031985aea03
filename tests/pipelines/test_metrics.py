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


def _alexnet_state() -> dict[str, torch.Tensor]:
    """A random state dict in torchvision's AlexNet layout (features.* plus a classifier key that must be ignored)."""
    torch.manual_seed(1)
    state = {f"features.{k}": torch.randn_like(v) * 0.05 for k, v in metrics.alexnet_features().state_dict().items()}
    return {**state, "classifier.6.bias": torch.zeros(1000)}


def test_lpips_loads_alexnet_from_the_torch_home_cache(tmp_path, monkeypatch):
    """Plumbing with a random AlexNet saved under the real file name (nothing downloaded)."""
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    state = _alexnet_state()
    torch.save(state, ckpt / metrics.ALEXNET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = metrics.lpips_net("alex")
    assert torch.equal(net.features[3].weight, state["features.3.weight"])
    assert net.lins[0].shape == (1, 64, 1, 1) and float(net.lins[0].sum()) > 0  # the torchmetrics linear layers
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(3, 3, 32, 32, generator=g) * 2 - 1 for _ in range(2))
    assert torch.equal(net(x, x), torch.zeros(3))
    assert torch.allclose(net(x, y), net(y, x)) and (net(x, y) > 0).all()
    assert (net(x, (x + 0.05).clamp(-1, 1)) < net(x, y)).all()  # a small change is closer than another image
    assert torch.equal(metrics.lpips_net("alex", str(ckpt / metrics.ALEXNET_FILE)).features[0].weight,
                       net.features[0].weight)  # an explicit path works too


def test_missing_alexnet_weights_name_the_file_and_small_images_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        metrics.lpips_net("alex")
    assert metrics.ALEXNET_FILE in str(e.value) and metrics.ALEXNET_URL in str(e.value)
    assert "lpips_backbone=tiny" in str(e.value)
    tiny = metrics.lpips_net("tiny")
    assert torch.equal(tiny.features[0].weight, metrics.lpips_net("tiny").features[0].weight)  # seeded
    with pytest.raises(ValueError, match="at least 32x32"):
        tiny(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))


def test_diversity_sums_over_pairs_of_styles():
    net = metrics.lpips_net("tiny")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    same = metrics.diversity_sums(net, torch.stack([x, x, x]))
    assert same[1] == 3 * 2 and same[0] == 0  # 3 pairs × 2 inputs
    other = metrics.diversity_sums(net, torch.stack([x, -x]))
    assert other[1] == 2 and other[0] == pytest.approx(float(net(x, -x).sum()))


def test_conditional_inception_score_by_hand():
    # input 0: outputs (.8, .2) and (.2, .8); input 1: (.9, .1) twice. Logits = log p give exactly these p.
    probs = torch.tensor([[[0.8, 0.2], [0.2, 0.8]], [[0.9, 0.1], [0.9, 0.1]]])
    p = torch.log(probs).softmax(-1)
    # CIS: per-input prior (.5, .5) and (.9, .1): KL = .8 ln 1.6 + .2 ln .4 = 0.192745 (twice) and 0 (twice)
    # IS: prior over all outputs (.7, .3): KLs 0.025732, 0.534111, 0.116321, 0.116321
    scores = metrics.inception_scores(p)
    assert scores["cis"] == pytest.approx(1.101169, abs=1e-6)
    assert scores["is"] == pytest.approx(1.219111, abs=1e-6)
    confident = torch.eye(4)[None].expand(3, 4, 4)  # 4 distinct confident classes per input: CIS = IS = 4
    assert metrics.inception_scores(confident)["cis"] == pytest.approx(4.0, rel=1e-6)


def test_domain_classifier_is_a_torchscript_file(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    torch.jit.script(net).save(str(tmp_path / "clf.pt"))
    clf = metrics.domain_classifier(str(tmp_path / "clf.pt"))
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(clf(x), net(x))
    with pytest.raises(FileNotFoundError, match="domain_classifier"):
        metrics.domain_classifier(str(tmp_path / "missing.pt"))

import os

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
    from torchvision.models import alexnet

    g = torch.Generator().manual_seed(1)
    state = {f"features.{k}": torch.randn(v.shape, generator=g) * 0.05
             for k, v in alexnet(weights=None).features.state_dict().items()}
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
    lin0 = net.net.lin0.model[-1].weight
    assert lin0.shape == (1, 64, 1, 1) and float(lin0.sum()) > 0  # the torchmetrics linear layers
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


def test_lpips_is_torchmetrics_over_cached_alexnet_with_the_old_numbers(tmp_path, monkeypatch):
    """torchmetrics' LPIPS on torchvision's AlexNet, loaded from the cache only (nothing else appears there: no
    download), gives the numbers the hand-written LPIPS gave on the same (random) weights and inputs."""
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(_alexnet_state(), ckpt / metrics.ALEXNET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = metrics.lpips_net("alex")
    assert isinstance(net.net, _NoTrainLpips) and os.listdir(ckpt) == [metrics.ALEXNET_FILE]
    g = torch.Generator().manual_seed(0)
    x, y = (torch.rand(3, 3, 48, 48, generator=g) * 2 - 1 for _ in range(2))
    # the hand-written implementation's values (commit c799b65), for these weights and images
    assert net(x, y).tolist() == pytest.approx([0.10771699, 0.10620523, 0.10475073], rel=1e-5)
    assert metrics.lpips_net("tiny")(x, y).tolist() == pytest.approx([0.10082296, 0.10886171, 0.10173863], rel=1e-5)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_distribution_from_parts_equals_torchmetrics_on_all_images():
    """FID/KID from statistics of parts (any split, any order) = torchmetrics' FID/KID on every image at once;
    what a part hands over is bounded (the KID sample keeps at most its cap, whatever the number of images)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _images(40, 0), (_images(40, 1) * 0.5).clamp(-1, 1)
    u8 = lambda x: (metrics.to_unit(x) * 255).round().to(torch.uint8)  # noqa: E731
    fid = FrechetInceptionDistance(feature=metrics.TinyFeatures(), sync_on_compute=False)
    kid = KernelInceptionDistance(feature=metrics.TinyFeatures(), subset_size=40, sync_on_compute=False)
    for m in (fid, kid):
        m.update(u8(real), real=True)
        m.update(u8(fake), real=False)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(2))
    parts = []
    for i in range(3):  # uneven, shuffled parts
        part = metrics.Distribution("tiny", kid_subset_size=40)
        part.update(real[perm[i::3]], real=True)
        part.update(fake[perm[i::3]], real=False)
        parts.append(part.state())
    merged = metrics.Distribution.from_states(parts, kid_subset_size=40).compute()
    assert merged["fid"] == pytest.approx(float(fid.compute()), rel=1e-5)
    assert merged["kid"] == pytest.approx(float(kid.compute()[0]), rel=1e-5)
    # more images than the KID sample holds: still independent of order and split, and bounded
    whole = metrics.Distribution("tiny", kid_subset_size=8, kid_pool=16)
    whole.update(real, real=True)
    whole.update(fake, real=False)
    halves = []
    for idx in (perm[:13], perm[13:]):
        half = metrics.Distribution("tiny", kid_subset_size=8, kid_pool=16)
        half.update(real[idx], real=True)
        half.update(fake[idx.flip(0)], real=False)
        halves.append(half.state())
        assert half.state()["real"]["pool"].shape[0] <= 16
    assert whole.real.pool.shape == (16, metrics.TINY_DIM)
    assert metrics.Distribution.from_states(halves, kid_subset_size=8).compute() == pytest.approx(whole.compute())


def _validate_rank(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from i2i_models.registry import get_model
    from pipelines.train_loop import LoopIO, _validate
    from tests.i2i_models.test_contract import TINY

    if world > 1:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_model("cyclegan", **TINY["cyclegan"]).eval()
    u8 = lambda x: (metrics.to_unit(x) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # noqa: E731
    rows = {"val_a": u8(_images(24, 3))[rank::world], "val_b": u8(_images(24, 4))[rank::world]}

    class Rows:  # this rank's share of a val split, as Ray Data's iter_torch_batches hands it out
        def __init__(self, images):
            self.images = images

        def iter_torch_batches(self, batch_size):
            for i in range(0, self.images.shape[0], batch_size):
                yield {"image": self.images[i : i + batch_size], "domain": torch.zeros(0)}

    io = LoopIO(dataset=lambda name: Rows(rows[name]), get_checkpoint=lambda: None, report=lambda m, c: None,
                checkpoint_from_directory=lambda d: None)
    config = {"data_mode": "unpaired", "seed": 0, "batch_size": 5, "crop_size": 16, "channels_last": False,
              "feature_net": "tiny"}
    result, _ = _validate(model, config, io, torch.device("cpu"))
    torch.save(result, f"{out}.{rank}")


def test_validation_across_ranks_combines_statistics_to_the_single_process_kid(tmp_path):
    """Two gloo ranks, each with half the val images, report the KID of all of them (no rank holds another's
    images): equal to one process over everything, and to KID written out over every sample."""
    import torch.multiprocessing as mp

    from i2i_models.registry import get_model
    from tests.conftest import kid_all_samples
    from tests.i2i_models.test_contract import TINY

    mp.spawn(_validate_rank, args=(2, f"file://{tmp_path}/init", str(tmp_path / "two")), nprocs=2)
    _validate_rank(0, 1, "", str(tmp_path / "one"))
    two = [torch.load(tmp_path / f"two.{r}", weights_only=True) for r in range(2)]
    one = torch.load(tmp_path / "one.0", weights_only=True)
    assert two[0]["val_kid"] == two[1]["val_kid"] == pytest.approx(one["val_kid"], rel=1e-5, abs=1e-7)
    torch.manual_seed(0)
    model = get_model("cyclegan", **TINY["cyclegan"]).eval()
    real_a = (metrics.to_unit(_images(24, 3)) * 255).round() / 127.5 - 1
    real_b = (metrics.to_unit(_images(24, 4)) * 255).round() / 127.5 - 1
    expected = kid_all_samples(real_b, model.translate(real_a), metrics.TinyFeatures())
    assert one["val_kid"] == pytest.approx(expected, rel=1e-4, abs=1e-6)

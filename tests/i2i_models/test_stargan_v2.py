import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from i2i_models import losses
from i2i_models.base import RunLength, unwrap
from i2i_models.blocks.stargan import Generator
from i2i_models.registry import get_model

TINY = dict(image_size=32, num_domains=3, base_dim=4, max_conv_dim=8, style_dim=8, latent_dim=4, mapping_dim=8)


def count(net):
    return sum(p.numel() for p in net.parameters())


def tiny(**overrides):
    return get_model("stargan_v2", **{**TINY, **overrides})


def labeled_batch(n=2, size=32, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.rand(n, 3, size, size, generator=g) * 2 - 1  # noqa: E731
    return {"image": img(), "domain": torch.randint(0, k, (n,), generator=g), "ref": img(), "ref2": img(),
            "ref_domain": torch.randint(0, k, (n,), generator=g)}


@pytest.mark.parametrize("row, counts", [
    (dict(), (33_892_995, 3_259_072, 20_949_760, 20_852_803)),  # AFHQ: the standard config
    (dict(num_domains=2, w_hpf=1.0), (43_467_395, 2_438_272, 20_916_928, 20_852_290)),  # CelebA-HQ (FAN not counted)
])
def test_parameter_counts_match_the_authors(row, counts):
    m = get_model("stargan_v2", **row)
    assert tuple(count(m.nets[k]) for k in ("G", "F", "E", "D")) == counts
    assert tuple(count(m.nets[k]) for k in ("G_ema", "F_ema", "E_ema")) == counts[:3]


def test_authors_defaults():
    m = tiny()
    assert m.loss_weights == {"adv": 1, "sty": 1, "ds": 1, "cyc": 1, "d_real": 1, "d_fake": 1, "r1": 1}
    assert {t.name: t.group for t in m.loss_terms} == {"adv": "G", "sty": "G", "ds": "G", "cyc": "G",
                                                       "d_real": "D", "d_fake": "D", "r1": "D"}
    assert m.data_mode == "labeled" and m.multimodal and m.inference_nets == ("G_ema", "F_ema", "E_ema")
    m.setup_optimizers()
    assert set(m.optimizers) == {"G", "F", "E", "D"}
    for name, opt in m.optimizers.items():
        assert isinstance(opt, torch.optim.Adam)
        assert opt.defaults["lr"] == (1e-6 if name == "F" else 1e-4)
        assert opt.defaults["betas"] == (0.0, 0.99) and opt.defaults["weight_decay"] == 1e-4
        assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in m.nets[name].parameters()}
    c = m.Config()  # the standard (AFHQ) config, without building it
    assert (c.image_size, c.num_domains, c.w_hpf, c.style_dim, c.latent_dim, c.max_conv_dim) == (256, 3, 0, 64, 16, 512)
    assert (c.n_iters, c.ds_iter, c.ema_beta) == (100_000, 100_000, 0.999)
    assert type(m).run_length(c) == RunLength("iterations", 100_000)  # at global batch 8: the recipes' business
    assert m.lr_factor(step=0, epoch=0) == m.lr_factor(step=99_999, epoch=54) == 1.0


def test_he_init():
    torch.manual_seed(0)
    m = get_model("stargan_v2", image_size=32, max_conv_dim=64, mapping_dim=256)
    fc = m.nets["F"].shared[2]  # Linear(256, 256): std √(2/256)
    assert abs(fc.weight.std().item() - (2 / 256) ** 0.5) < 0.005 and torch.count_nonzero(fc.bias) == 0
    conv = m.nets["D"].main[1].conv2  # Conv2d(512, 64, 3): fan_in 512·9
    assert abs(conv.weight.std().item() - (2 / (512 * 9)) ** 0.5) < 0.002 and torch.count_nonzero(conv.bias) == 0


def test_ema_is_a_frozen_average_of_the_trained_nets():
    torch.manual_seed(0)
    m = tiny()
    m.setup_optimizers()
    m.train_step(labeled_batch(), 0)
    old = {k: p.clone() for k, p in m.nets.named_parameters()}
    m.train_step(labeled_batch(seed=1), 5)
    for name in ("G", "F", "E"):
        ema, net = m.nets[f"{name}_ema"], m.nets[name]
        assert all(not p.requires_grad for p in ema.parameters())
        for (k, p_ema), p_new in zip(ema.named_parameters(), net.parameters()):
            expected = 0.999 * old[f"{name}_ema.{k}"] + 0.001 * p_new
            torch.testing.assert_close(p_ema, expected, rtol=1e-6, atol=1e-9)
        assert any(not torch.equal(a, b) for a, b in zip(ema.parameters(), net.parameters()))
    assert not any(p.requires_grad for o in m.optimizers.values() for g in o.param_groups for p in g["params"]
                   if any(p is q for k in ("G_ema", "F_ema", "E_ema") for q in m.nets[k].parameters()))
    exported = m.export()
    assert set(exported.nets) == {"G_ema", "F_ema", "E_ema"}
    for k in exported.nets:
        for a, b in zip(exported.nets[k].parameters(), m.nets[k].parameters()):
            assert torch.equal(a, b)


def test_ema_starts_where_the_authors_does_before_he_init():
    """The authors deep-copy G, F, E into the EMA nets before he_init: the averages start at PyTorch's default
    initialisation, and the first update blends it with the trained weights (no restart at step 0)."""
    torch.manual_seed(3)
    m = tiny()
    torch.manual_seed(3)
    default = Generator(32, TINY["style_dim"], TINY["max_conv_dim"], 0.0, TINY["base_dim"])  # built first, same RNG
    for e, d, g in zip(m.nets["G_ema"].parameters(), default.parameters(), m.nets["G"].parameters()):
        assert torch.equal(e, d)
    assert any(not torch.equal(e, g) for e, g in zip(m.nets["G_ema"].parameters(), m.nets["G"].parameters()))
    m.setup_optimizers()
    m.train_step(labeled_batch(), 0)
    for e, d, g in zip(m.nets["G_ema"].parameters(), default.parameters(), m.nets["G"].parameters()):
        torch.testing.assert_close(e, 0.999 * d + 0.001 * g, rtol=1e-6, atol=1e-9)


def test_ds_weight_schedule_is_a_function_of_step():
    m = tiny(ds_iter=100)
    assert [m.ds_schedule(s) for s in (0, 50, 100, 150)] == [1.0, 0.5, 0.0, 0.0]
    assert tiny().ds_schedule(25_000) == 0.75  # ds_iter 100k by default


def _g_after_step(ds_weight, step):
    torch.manual_seed(0)
    m = get_model("stargan_v2", loss_weights={"ds": ds_weight}, ds_iter=100, **TINY)
    m.setup_optimizers()
    torch.manual_seed(1)
    m.train_step(labeled_batch(), step)
    return [p.detach().clone() for p in m.nets["G"].parameters()]


def test_ds_weight_by_name_and_its_decay_act_on_the_generator_update():
    assert m_differs(_g_after_step(1.0, 50), _g_after_step(2.0, 50))  # λ_ds (AFHQ command: 2) matters mid-way …
    assert not m_differs(_g_after_step(1.0, 100), _g_after_step(2.0, 100))  # … and not once decayed to 0


def m_differs(a, b):
    return any(not torch.equal(x, y) for x, y in zip(a, b))


def test_r1_matches_the_analytic_value():
    torch.manual_seed(0)
    w = torch.randn(12, requires_grad=True)
    x = torch.randn(5, 3, 2, 2, requires_grad=True)
    r1 = losses.r1(x.flatten(1) @ w + 0.3, x)  # linear D: ∇_x D = w for every sample → R1 = ½‖w‖²
    torch.testing.assert_close(r1, 0.5 * w.pow(2).sum())
    r1.backward()  # differentiable in D's parameters (create_graph): ∂R1/∂w = w
    torch.testing.assert_close(w.grad, w.detach())
    r1_quad = losses.r1(0.5 * x.pow(2).flatten(1).sum(1), x)  # D = ½‖x‖²: ∇ = x → R1 = ½·E‖x‖²
    torch.testing.assert_close(r1_quad, 0.5 * x.detach().pow(2).flatten(1).sum(1).mean())


def test_latent_guided_styles_are_diverse_and_seeded():
    torch.manual_seed(0)
    m = tiny()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    a, b = m.translate(x, domain=1, seed=3), m.translate(x, domain=1, seed=3)
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.allclose(a, m.translate(x, domain=1, seed=4))
    assert not torch.allclose(a, m.translate(x, domain=2, seed=3))  # another domain's head
    assert not torch.equal(m.translate(x, domain=0), m.translate(x, domain=0))  # seed None: the global RNG


def test_reference_guided_output_follows_the_reference():
    torch.manual_seed(0)
    m = tiny()
    x, r1, r2 = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3))
    y = torch.tensor([0, 2])
    out = m.translate(x, domain=y, reference=r1)
    assert torch.equal(out, m.translate(x, domain=y, reference=r1))
    assert not torch.allclose(out, m.translate(x, domain=y, reference=r2))
    one = m.translate(x, domain=y, reference=r1[:1])  # one reference for the whole batch
    assert torch.allclose(one[0], out[0], atol=1e-5)


def test_bad_conditions_are_rejected():
    m = tiny()
    x = torch.rand(2, 3, 32, 32)
    for bad in (3, -1, torch.tensor([0, 3])):
        with pytest.raises(ValueError, match=r"domain must be in \[0, 3\)"):
            m.translate(x, domain=bad)
    with pytest.raises(ValueError, match="shape"):
        m.translate(x, domain=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="reference must be"):
        m.translate(x, domain=0, reference=torch.rand(3, 3, 32, 32))
    with pytest.raises(ValueError, match="reference must be"):
        m.translate(x, domain=0, reference=torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="not both"):
        m.translate(x, domain=0, seed=1, reference=torch.rand(2, 3, 32, 32))
    with pytest.raises(TypeError, match="direction"):
        m.translate(x, domain=0, direction="a2b")
    with pytest.raises(TypeError, match="domain"):
        m.translate(x)


def test_high_pass_variant_needs_a_landmark_network():
    m = tiny(num_domains=2, w_hpf=1.0)
    m.setup_optimizers()
    batch, x = labeled_batch(k=2), torch.rand(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="face-landmark network"):
        m.train_step(batch, 0)
    with pytest.raises(RuntimeError, match="face-landmark network"):
        m.translate(x, domain=0)
    heatmaps = lambda img: (torch.ones_like(img[:, :1]), torch.full_like(img[:, :1], 0.5))  # noqa: E731
    m.set_landmark_net(heatmaps)
    out = m.train_step(batch, 0)
    assert all(torch.isfinite(v) for v in out.losses.values())
    assert m.translate(x, domain=1, seed=0).shape == x.shape
    assert not any("landmark" in k for k in m.state_dict())  # not a network of the model


def test_bf16_autocast_path():
    m = tiny()
    m.amp_dtype = torch.bfloat16
    m.setup_optimizers()
    out = m.train_step(labeled_batch(), 0)
    assert all(torch.isfinite(v) for v in out.losses.values()) and out.images["fake_latent"].dtype == torch.float32
    assert m.translate(torch.rand(1, 3, 32, 32), domain=0).dtype == torch.float32


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # as the trainer: the model from one seed on every rank (the EMA copies agree) …
        m = tiny()
        torch.manual_seed(rank)  # … then a stream of its own per rank
        for name in list(m.nets):  # the trainer's wrapping: every net with trainable parameters, separately
            if any(p.requires_grad for p in m.nets[name].parameters()):
                m.nets[name] = torch.nn.parallel.DistributedDataParallel(m.nets[name], broadcast_buffers=False)
        m.setup_optimizers()
        for step in range(2):
            m.train_step(labeled_batch(seed=10 * rank + step), step)  # different data on each rank
        torch.save({k: unwrap(v).state_dict() for k, v in m.nets.items()}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_steps_under_real_ddp_keep_ranks_identical(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2))
    assert set(r0) == {"G", "F", "E", "D", "G_ema", "F_ema", "E_ema"}
    for net in r0:
        for k in r0[net]:
            assert torch.equal(r0[net][k], r1[net][k]), f"{net}.{k} differs across ranks"

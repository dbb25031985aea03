"""One contract test over every registered family (tiny configs, CPU, seconds)."""

import math

import pytest
import torch

from i2i_models.base import I2IModel
from i2i_models.registry import get_model, list_models

TINY = {
    "pix2pix": dict(image_size=32, ngf=8, ndf=8),
    "cyclegan": dict(image_size=32, ngf=8, ndf=8, n_blocks=2),
    "discogan": dict(image_size=32, ngf=8, ndf=8, n_blocks=2),
    "dualgan": dict(image_size=32, ngf=8, ndf=8, n_blocks=2),
    "discogan_code": dict(image_size=32, ngf=8, ndf=8, n_blocks=2),
    "dualgan_code": dict(image_size=32, ngf=8, ndf=8, n_blocks=2),
    "unit": dict(image_size=32, dim=8, n_res=2, dis_dim=8, dis_n_layer=3),
    "munit": dict(image_size=32, dim=8, n_res=2, mlp_dim=16, dis_dim=8, dis_n_layer=3),
    "stargan_v2": dict(image_size=32, num_domains=3, base_dim=4, max_conv_dim=8, style_dim=8, latent_dim=4,
                       mapping_dim=8),
    **{name: dict(image_size=16, nz=8, ngf=4, ndf=4) for name in ("ae", "vae", "gan")},
    "vae_gan": dict(image_size=16, nz=8, ngf=4, ndf=4, feature_layer=2),
    "aae": dict(image_size=16, nz=8, ngf=4, ndf=4, d_hidden=16),
    "avb": dict(image_size=16, nz=8, ngf=4, ndf=4, eps_dim=4, t_hidden=16, t_dim=8),
    "ali": dict(image_size=16, nz=8, ngf=4, ndf=4),
    "triangle_gan": dict(arch="photo", image_size=16, in_channels=3, out_channels=3, ngf=4, ndf=4, n_blocks=1,
                         n_layers_D=2, d_steps=1),
    # f_source unset: the built-in digit f, randomly initialised and frozen (no file needed)
    "dtn": dict(image_size=16, out_channels=3, nef=4, f_dim=8, ngf=4, ndf=4),
    "cogan": dict(arch="conv64", image_size=16, in_channels=3, nz=8, ngf=4, ndf=4, translate_steps=3),
}
CONDITIONS = {  # what translate() needs besides x, for families that require a condition
    "stargan_v2": dict(domain=1),
}


def batch_for(model: I2IModel, n: int = 2, size: int | None = None) -> dict:  # None: its image_size
    return model.example_batch(n, size, generator=torch.Generator().manual_seed(0))


@pytest.fixture(params=list_models())
def name(request):
    assert request.param in TINY, f"add a tiny config for '{request.param}' to TINY"
    return request.param


def test_declares_the_contract(name):
    m = get_model(name, **TINY[name])
    assert m.data_mode in ("paired", "unpaired", "labeled", "single")
    assert m.loss_terms and all(t.group in m.nets for t in m.loss_terms)
    assert set(m.inference_nets) <= set(m.nets)
    assert m.default_weights() == {t.name: t.weight for t in m.loss_terms}


def test_two_train_steps_give_finite_named_losses(name):
    torch.manual_seed(0)
    m = get_model(name, **TINY[name])
    m.setup_optimizers()
    before = {k: p.clone() for k, p in m.nets.named_parameters()}
    for step in range(2):
        out = m.train_step(batch_for(m), step)
        assert set(out.losses) == {t.name for t in m.loss_terms}
        assert all(math.isfinite(v.item()) for v in out.losses.values())
    for group in {t.group for t in m.loss_terms}:  # every optimizer group moved
        assert any(not torch.equal(p, before[k]) for k, p in m.nets.named_parameters() if k.startswith(group + "."))


def test_weight_override_by_name_changes_the_total(name):
    m = get_model(name, **TINY[name])
    m.setup_optimizers()
    raw = m.train_step(batch_for(m), 0).losses
    term = m.loss_terms[0]
    heavier = get_model(name, loss_weights={term.name: term.weight * 3 + 1}, **TINY[name])
    assert heavier.loss_weights[term.name] == term.weight * 3 + 1
    assert not torch.allclose(heavier.weighted(raw, term.group), m.weighted(raw, term.group))


def test_unknown_names_are_rejected(name):
    with pytest.raises(KeyError, match=r"unknown loss term\(s\) \['nope'\].*valid: "):
        get_model(name, loss_weights={"nope": 1.0}, **TINY[name])
    with pytest.raises(KeyError, match=r"unknown config key\(s\) \['bogus'\]"):
        get_model(name, bogus=1, **TINY[name])
    with pytest.raises(KeyError, match=r"unknown model 'nope'; registered models: .*" + name):
        get_model("nope")


def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(0)
    m = get_model(name, loss_weights={m.name: m.weight for m in get_model(name, **TINY[name]).loss_terms[:1]},
                  **TINY[name])
    m.setup_optimizers()
    m.train_step(batch_for(m), 0)
    m.save_pretrained(str(tmp_path))
    loaded = I2IModel.from_pretrained(str(tmp_path))
    assert loaded.describe() == m.describe()
    for (k, a), (_, b) in zip(m.nets.state_dict().items(), loaded.nets.state_dict().items()):
        assert torch.equal(a, b), k
    exported = m.export()
    assert set(exported.nets) == set(m.inference_nets)
    x = batch_for(m)
    first = next(iter(x.values()))
    if m.data_mode == "single":  # what the exported networks must still do: sample, and reconstruct if they encode
        torch.testing.assert_close(exported.sample(3, seed=7), loaded.sample(3, seed=7), rtol=0, atol=0)
        if not m.encodes:
            with pytest.raises(NotImplementedError, match=r"sample\(n, seed="):
                exported.translate(first)
            return
    torch.manual_seed(1)
    y1 = exported.translate(first, **CONDITIONS.get(name, {}))
    assert y1.shape[0] == first.shape[0] and torch.isfinite(y1).all()

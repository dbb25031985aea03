"""Pure loss functions (raw, unweighted). Weighting happens once, in ``I2IModel.weighted``."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

GanKind = Literal["vanilla", "lsgan", "hinge", "wgan"]


def adversarial(pred: torch.Tensor, real: bool, kind: GanKind = "vanilla", *,
                for_discriminator: bool = True) -> torch.Tensor:
    """GAN loss on raw discriminator outputs (logits), averaged over batch and patches.

    vanilla: BCE with logits — for G with ``real=True`` this is the non-saturating −log D(G(x)), the form pix2pix
    and CycleGAN train with. lsgan: (D − 1)² / D². hinge: D uses relu(1 ∓ D), G uses −D.
    wgan (Arjovsky et al. 2017): the critic's −D(real) / +D(fake), G's −D(fake) — only meaningful with a Lipschitz
    constraint, which is the caller's job (WGAN and DualGAN clip the critic's weights after each of its steps).
    """
    if kind == "vanilla":
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if kind == "lsgan":
        return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))
    if kind == "hinge":
        if not for_discriminator:
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
    if kind == "wgan":
        return -pred.mean() if real else pred.mean()
    raise ValueError(f"unknown GAN loss '{kind}'; choose vanilla, lsgan, hinge or wgan")


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(x, y)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x, y)


def kl_unit_variance(mu: torch.Tensor) -> torch.Tensor:
    """UNIT's KL term for q(z|x) = N(μ, I) against the prior N(0, I). Per sample KL = ½ Σ_i μ_i²; the authors'
    code (and so its recon_kl weight 0.01) uses mean(μ²) over all N·D elements, = (2 / D) · mean_n KL_n with D
    the elements of one sample's latent."""
    return mu.pow(2).mean()


def r1(d_out: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """Zero-centred gradient penalty on real images (Mescheder et al. 2018): R1 = ½·E_x[‖∇_x D(x)‖²].

    ``x_in`` must require grad and ``d_out`` be D's output on it. The gradient is taken out of place with
    ``torch.autograd.grad(create_graph=True)``, so the caller then runs ONE ordinary ``backward()`` of the whole D
    loss: under DDP the penalty's gradient is all-reduced with the rest, and no double backward goes through DDP.
    """
    (grad,) = torch.autograd.grad(outputs=d_out.sum(), inputs=x_in, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017) as DualGAN's current code computes it: x̂ = real + ε·(fake − real),
    ε ~ U(0, 1) per sample; E[(√(1e-8 + ‖∇_x̂ Σ critic(x̂)‖²) − 1)²]. As :func:`r1`: the gradient out of place with
    ``create_graph``, then one ordinary backward of the whole critic loss."""
    eps = torch.rand(real.size(0), 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (real + eps * (fake.detach() - real)).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(outputs=critic(x_hat).float().sum(), inputs=x_hat, create_graph=True)
    slopes = torch.sqrt(1e-8 + grad.pow(2).flatten(1).sum(1))
    return (slopes - 1.0).pow(2).mean()


def feature_matching(real_feats, fake_feats) -> torch.Tensor:
    """DiscoGAN's code (``get_fm_loss``): Σ over layers of mean((E_batch f(real) − E_batch f(fake))²) — its
    ``HingeEmbeddingLoss`` against targets 1 is the plain mean. Real features are targets (detached)."""
    return torch.stack([(r.detach().float().mean(0) - f.float().mean(0)).pow(2).mean()
                        for r, f in zip(real_feats, fake_feats, strict=True)]).sum()


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_i (μ_i² + σ_i² − log σ_i² − 1), summed over the code, averaged over the
    batch (Kingma & Welling, appendix B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).flatten(1).sum(1).mean()


def sum_squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E_x ‖x − y‖²: squared error summed over each sample's elements, averaged over the batch."""
    return (x.float() - y.float()).pow(2).flatten(1).sum(1).mean()

"""History of generated images for the discriminator (Shrivastava et al. 2017, "Learning from Simulated and
Unsupervised Images through Adversarial Training", §2.3), as CycleGAN uses it (paper §4, "Training details": a
buffer of the 50 previously generated images) and as the authors' ``ImagePool`` behaves:

* ``size == 0``: no buffer — the new images pass through (detached);
* while the buffer holds fewer than ``size`` images, each new image is stored and returned;
* once full, each new image is, with probability 1/2, swapped for a uniformly chosen stored one (the stored image is
  returned, the new one takes its place), and otherwise returned as is.

The batch goes one image at a time, so a batch can fill the buffer midway. The output always has the input's batch
size, and is detached (D's step must not reach G). Randomness comes from torch's RNG (``generator`` or the global
one), so ``torch.manual_seed`` makes it reproducible. The buffer is not part of a checkpoint (nor is it in the
authors' code): after a resume it refills over the next ``size`` images.
"""

from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, size: int = 50):
        if size < 0:
            raise ValueError(f"pool size must be ≥ 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []  # each (C, H, W), detached copies

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, C, H, W) new fakes → (N, C, H, W) fakes for D: a mix of stored and new ones."""
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=generator).item() < 0.5:
                i = int(torch.randint(self.size, (), generator=generator))
                out.append(self.images[i])
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

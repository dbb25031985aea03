"""PatchGAN discriminators (pix2pix §3.2.2; CycleGAN).

``PatchDiscriminator(n_layers=3)`` is the 70×70 PatchGAN: each output logit sees a 70×70 receptive field, and the
loss averages over all of them. ``PixelDiscriminator`` is the 1×1 PixelGAN.
"""

from __future__ import annotations

from torch import nn

from i2i_models.blocks.norms import Norm, conv_bias, norm_layer


class PatchDiscriminator(nn.Module):
    def __init__(self, input_nc: int, *, ndf: int = 64, n_layers: int = 3, norm: Norm = "batch"):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):  # stride 2 for n < n_layers, then one stride-1 layer
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=bias), make_norm(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))  # one logit per patch
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class PixelDiscriminator(nn.Module):
    def __init__(self, input_nc: int, *, ndf: int = 64, norm: Norm = "batch"):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1, 1, 0), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, 1, 0, bias=bias), make_norm(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, 1, 0, bias=bias),
        )

    def forward(self, x):
        return self.model(x)

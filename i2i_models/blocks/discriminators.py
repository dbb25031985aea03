"""PatchGAN discriminators (pix2pix §3.2.2; CycleGAN).

``PatchDiscriminator(n_layers=3)`` is the 70×70 PatchGAN: each output logit sees a 70×70 receptive field, and the
loss averages over all of them. ``PixelDiscriminator`` is the 1×1 PixelGAN. ``MultiScaleDiscriminator`` is UNIT /
MUNIT's pyramid of discriminators on the image downsampled by average pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from i2i_models.blocks.conv_blocks import ConvBlock, PadType
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

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the logits, the activations after each normalised layer): the layers DiscoGAN's code matches
        features on (its D returns relu2, relu3, relu4 — every activation but the first)."""
        feats = []
        for i, layer in enumerate(self.model):
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU) and i > 1:
                feats.append(x)
        return x, feats


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


class MultiScaleDiscriminator(nn.Module):
    """UNIT / MUNIT multi-scale discriminator: ``num_scales`` identical, independent fully-convolutional
    discriminators on the image and on copies average-pooled by 2, 4, … (3×3 window, stride 2, padding not
    counted). Each: conv4 stride 2 (no norm, LeakyReLU 0.2) then ``n_layers − 1`` more doubling the channels, then a
    1×1 conv to one logit per patch. Padding is a separate layer (reflect, as the authors' ``pad_type``). At
    ``dim`` 64, 4 layers on 3 channels: 2,757,057 parameters per scale, 8,271,171 for 3 scales.
    ``forward`` returns the list of per-scale logit maps, finest first.
    """

    def __init__(self, input_nc: int, *, dim: int = 64, n_layers: int = 4, num_scales: int = 3,
                 pad_type: PadType = "reflect"):
        super().__init__()
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.scales = nn.ModuleList([self._scale(input_nc, dim, n_layers, pad_type) for _ in range(num_scales)])

    @staticmethod
    def _scale(input_nc: int, dim: int, n_layers: int, pad_type: PadType) -> nn.Sequential:
        kw = dict(norm="none", activation="lrelu", pad_type=pad_type)
        layers: list[nn.Module] = [ConvBlock(input_nc, dim, 4, 2, 1, **kw)]
        for _ in range(n_layers - 1):
            layers.append(ConvBlock(dim, dim * 2, 4, 2, 1, **kw))
            dim *= 2
        layers.append(nn.Conv2d(dim, 1, 1, 1, 0))
        return nn.Sequential(*layers)

    def forward(self, x):
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            outputs.append(scale(x))
        return outputs

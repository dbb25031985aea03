"""U-Net generator with skip connections (pix2pix, Isola et al. 2017, §3.2.1 and appendix 6.1.1).

Built from the innermost block outwards, as the authors' ``UnetGenerator``: each block is
down (LeakyReLU 0.2, conv 4×4 s2) → submodule → up (ReLU, transposed conv 4×4 s2), and its output is concatenated
with its input (the skip). The ``num_downs - 5`` intermediate ngf·8 blocks carry Dropout(0.5), the generator's
only noise source. ``num_downs`` = log2(image size): 8 for 256 px (unet_256), 7 for 128 px (unet_128).
"""

from __future__ import annotations

import torch
from torch import nn

from i2i_models.blocks.norms import Norm, conv_bias, norm_layer


class UnetBlock(nn.Module):
    def __init__(self, outer_nc: int, inner_nc: int, *, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, innermost: bool = False,
                 norm: Norm = "batch", dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, make_norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, make_norm(inner_nc), submodule, uprelu, upconv, make_norm(outer_nc)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, input_nc: int, output_nc: int, num_downs: int, *, ngf: int = 64, norm: Norm = "batch",
                 dropout: bool = True):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be ≥ 5 (the U-Net's fixed outer levels), got {num_downs}")
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        for mult in (4, 2, 1):  # ngf*8 → ngf*4 → ngf*2 → ngf
            block = UnetBlock(ngf * mult, ngf * mult * 2, submodule=block, norm=norm)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

"""Image encoders: (N, 3, S, S) normalized float -> (N, encoder_width) feature.

`ViTEncoder` is the paper's (ViT-Tiny/14 at 224 px, trained from scratch, CLS token).
`CNNEncoder` is a small strided conv net for CPU presets: at 64 px it costs a few
percent of a ViT's FLOPs, which is what makes minutes-long CPU training possible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .modules import Block


class ViTEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.encoder_width
        eps = 1e-12 if cfg.layer_norms == "reference" else 1e-5  # the reference's is transformers' ViT
        num_patches = (cfg.image_size // cfg.patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, w) * 0.02)
        self.blocks = nn.ModuleList(
            Block(w, cfg.encoder_heads, cfg.encoder_mlp, eps=eps) for _ in range(cfg.encoder_depth))
        self.norm = nn.LayerNorm(w, eps=eps)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)          # (N, P, w)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], 1)  # (N, 1+P, w)
        x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])                                    # (N, w) CLS token


class ResidualBlock(nn.Module):
    """x + conv(act(norm(conv(act(norm(x)))))), 3x3 at stride 1: widens what each feature sees by 4 px
    at its resolution without changing the shape (pre-activation, so the identity path stays clean)."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(1, c), nn.GELU(), nn.Conv2d(c, c, kernel_size=3, padding=1),
            nn.GroupNorm(1, c), nn.GELU(), nn.Conv2d(c, c, kernel_size=3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CNNEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(cfg.cnn_channels):  # each conv halves the resolution
            layers += [nn.Conv2d(c_in, c, kernel_size=4, stride=2, padding=1), nn.GroupNorm(1, c), nn.GELU()]
            if cfg.cnn_residual and i > 0:  # only when asked: plain nets keep their parameter names
                layers.append(ResidualBlock(c))
            c_in = c
        self.convs = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(cfg.cnn_channels)
        self.fc = nn.Linear(c_in * side * side, cfg.encoder_width)
        self.norm = nn.LayerNorm(cfg.encoder_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).flatten(1)  # (N, C*side*side): keep spatial layout, positions matter
        return self.norm(self.fc(x))  # (N, w)


def build_encoder(cfg: ModelConfig) -> nn.Module:
    return ViTEncoder(cfg) if cfg.encoder == "vit" else CNNEncoder(cfg)


def preprocess(pixels: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1] -> float (N, 3, S, S) in [-1, 1]."""
    if pixels.dtype == torch.uint8:
        x = pixels.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)
    else:
        x = pixels.float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x * 2.0 - 1.0  # out of place: a float input may be the caller's own tensor

"""Mechanics shared by every family: padding, window partition, masks, relative position bias,
fused attention, MLP and drop path.

Layouts: ``BHWC`` means a channels-last map ``[B, H, W, C]``; windows are ``[B * nW, N, C]`` with
``N = wh * ww`` tokens per window.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Added to the attention logits of pairs that must not attend to each other. A query always keeps
# itself as a key (same label, see `label_mask`), so no softmax row is ever fully masked.
MASKED = float('-inf')


def drop_path_rates(depths: list[int] | tuple[int, ...], rate: float) -> list[list[float]]:
    """Linear stochastic-depth schedule over all blocks, split per stage (as Swin, timm, mmdet)."""
    total = sum(depths)
    rates = [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class Mlp(nn.Module):
    """Transformer feed-forward: ``fc1 -> act -> drop -> fc2 -> drop`` on the last dimension."""

    def __init__(self, in_features: int, hidden_features: int, act_layer: type[nn.Module] = nn.GELU,
                 drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def pad_hw(x: Tensor, height: int, width: int, channels_last: bool = True, value: float = 0.0) -> Tensor:
    """Pads a feature map at the bottom/right to ``height x width`` for masked attention.

    ``[B, H, W, C]`` (``channels_last``) or ``[B, C, H, W]``. Every family pads tokens that attention
    must ignore through this one function, so tests can change ``value`` and check that no output of
    a real token moves.
    """
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    if H == height and W == width:
        return x
    pad = (0, width - W, 0, height - H)
    return F.pad(x, (0, 0) + pad if channels_last else pad, value=value)


def round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def window_partition(x: Tensor, window: tuple[int, int]) -> Tensor:
    """``[B, H, W, C]`` (H, W multiples of the window) -> ``[B * nW, wh * ww, C]``."""
    B, H, W, C = x.shape
    wh, ww = window
    x = x.view(B, H // wh, wh, W // ww, ww, C).transpose(2, 3)
    return x.reshape(-1, wh * ww, C)


def window_reverse(windows: Tensor, window: tuple[int, int], height: int, width: int) -> Tensor:
    """Inverse of `window_partition`: ``[B * nW, wh * ww, C]`` -> ``[B, H, W, C]``."""
    wh, ww = window
    C = windows.shape[-1]
    x = windows.view(-1, height // wh, width // ww, wh, ww, C).transpose(2, 3)
    return x.reshape(-1, height, width, C)


@functools.lru_cache(maxsize=32)
def relative_position_index(wh: int, ww: int, device: torch.device | None = None) -> Tensor:
    """``[N, N]`` index into a ``(2wh-1)(2ww-1)`` bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing='ij')).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # [2, N, N]
    index = (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)
    return index.to(device)


def relative_position_bias(table: Tensor, window: tuple[int, int]) -> Tensor:
    """Gathers a ``[(2wh-1)(2ww-1), heads]`` table into the ``[heads, N, N]`` attention bias."""
    index = relative_position_index(*window, device=table.device)
    N = index.shape[0]
    return table[index.view(-1)].view(N, N, -1).permute(2, 0, 1)


def label_mask(labels: Tensor, window: tuple[int, int], shift: tuple[int, int] = (0, 0)) -> Tensor:
    """Float mask ``[nW, N, N]`` letting a token attend only to tokens of its own label.

    ``labels`` is an ``[H, W]`` integer map (H, W multiples of the window) of the padded feature
    map: padded tokens and the regions that a cyclic shift brings together carry different labels.
    The map is rolled by ``-shift`` like the features before it is split into windows.
    """
    if any(shift):
        labels = labels.roll((-shift[0], -shift[1]), dims=(0, 1))
    windows = window_partition(labels[None, :, :, None], window).squeeze(-1)  # [nW, N]
    same = windows[:, :, None] == windows[:, None, :]
    return torch.zeros(same.shape, device=labels.device).masked_fill_(~same, MASKED)


@functools.lru_cache(maxsize=64)
def window_attention_mask(height: int, width: int, padded_height: int, padded_width: int,
                          window: tuple[int, int], shift: tuple[int, int],
                          device: torch.device) -> Tensor | None:
    """Mask ``[nW, N, N]`` for (shifted) window attention on a map padded from H x W, cached per shape.

    Shifted windows keep Swin's regions (tokens wrapped around by the cyclic shift do not see each
    other); padded tokens are never keys of real tokens. Returns ``None`` when nothing is masked.
    """
    pad = padded_height > height or padded_width > width
    if not pad and not any(shift):
        return None
    labels = torch.zeros(padded_height, padded_width, dtype=torch.long, device=device)
    if any(shift):
        (wh, ww), (sh, sw) = window, shift
        for size, w, s, dim in ((padded_height, wh, sh, 0), (padded_width, ww, sw, 1)):
            region = torch.zeros(size, dtype=torch.long, device=device)
            region[size - w:] = 1
            region[size - s:] = 2
            labels = labels * 3 + (region[:, None] if dim == 0 else region[None, :])
    if pad:
        labels[height:, :] = -1
        labels[:, width:] = -1
    return label_mask(labels, window, shift)


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
              dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(d) + mask) v`` through PyTorch's fused kernel.

    ``q``: ``[B, heads, Nq, d]``, ``k``/``v``: ``[B, heads, Nk, d]``; ``attn_mask`` broadcasts to
    ``[B, heads, Nq, Nk]`` (a relative position bias, a padding mask, or both added).
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                          dropout_p=dropout_p if training else 0.0)


def bhwc_to_nchw(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding: zero-pads the image to a patch multiple, then a strided conv.

    ``[B, C_in, H, W]`` -> ``[B, ceil(H / p), ceil(W / p), C]`` (channels last), with an optional
    LayerNorm on the tokens.
    """

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int, norm: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dims) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[2:]
        p = self.patch_size
        x = F.pad(x, (0, round_up(W, p) - W, 0, round_up(H, p) - H))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x

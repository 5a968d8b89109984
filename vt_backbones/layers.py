"""Mechanics shared by every family: padding, window partition, masks, relative position bias,
fused attention, MLP and drop path.

Layouts: ``BHWC`` means a channels-last map ``[B, H, W, C]``; windows are ``[B * nW, N, C]`` with
``N = wh * ww`` tokens per window.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class WindowGrid:
    """How an ``H x W`` map is cut into windows, cached per shape (`window_grid`).

    A window holds ``wh x ww`` tokens taken every ``dilation`` rows/columns: dilation 1 gives
    Swin's adjacent windows (optionally cyclically shifted), larger dilations the strided windows of
    Shuffle Transformer, GG-Transformer and CrossFormer's long-distance attention. One gather does
    the padding, the shift and the partition, one gather undoes them and crops, and ``mask``
    (``[nW, N, N]`` or ``None``) keeps attention inside Swin's shifted regions and away from padded
    tokens.
    """
    height: int
    width: int
    padded_height: int
    padded_width: int
    window: tuple[int, int]
    partition_index: Tensor  # [nW * N] window slot -> token of the padded map (flattened)
    reverse_index: Tensor  # [H * W] real token -> window slot
    mask: Tensor | None

    @property
    def num_windows(self) -> int:
        return self.partition_index.numel() // (self.window[0] * self.window[1])

    def partition(self, x: Tensor) -> Tensor:
        """``[B, H, W, C]`` -> ``[B * nW, N, C]``."""
        B, C = x.shape[0], x.shape[-1]
        x = pad_hw(x, self.padded_height, self.padded_width)
        x = x.reshape(B, -1, C).index_select(1, self.partition_index)
        return x.view(B * self.num_windows, -1, C)

    def reverse(self, windows: Tensor) -> Tensor:
        """``[B * nW, N, C]`` -> ``[B, H, W, C]`` (shift undone, padding cropped)."""
        C = windows.shape[-1]
        x = windows.reshape(-1, self.partition_index.numel(), C)
        return x.index_select(1, self.reverse_index).view(-1, self.height, self.width, C)


@functools.lru_cache(maxsize=64)
def window_grid(height: int, width: int, window: tuple[int, int], shift: tuple[int, int] = (0, 0),
                device: torch.device | None = None, dilation: tuple[int, int] = (1, 1)) -> WindowGrid:
    """The `WindowGrid` of an ``H x W`` map.

    The map is padded at the bottom/right to multiples of ``window * dilation`` and rolled by
    ``-shift`` (Swin's cyclic shift; only without dilation). Each ``(wh * dh) x (ww * dw)`` block is
    cut into ``dh * dw`` windows; window ``(i, j)`` of a block holds its rows ``i, i + dh, ...`` and
    columns ``j, j + dw, ...``, in row-major order.
    """
    (wh, ww), (sh, sw), (dh, dw) = window, shift, dilation
    if (sh or sw) and (dh, dw) != (1, 1):
        raise ValueError(f'a cyclic shift needs dilation (1, 1), got shift={shift} dilation={dilation}')
    Hp, Wp = round_up(height, wh * dh), round_up(width, ww * dw)

    def cut(grid: Tensor) -> Tensor:  # [Hp, Wp] -> [nW * N]: (block, offset) windows, row-major tokens
        blocks = grid.view(Hp // (wh * dh), wh, dh, Wp // (ww * dw), ww, dw)
        return blocks.permute(0, 2, 3, 5, 1, 4).reshape(-1)

    rows, cols = torch.arange(Hp), torch.arange(Wp)
    # After the roll by -shift, position (r, c) holds the token from ((r + sh) % Hp, (c + sw) % Wp).
    source = ((rows + sh) % Hp)[:, None] * Wp + ((cols + sw) % Wp)[None, :]
    partition_index = cut(source)
    slot_of_token = torch.empty_like(partition_index)
    slot_of_token[partition_index] = torch.arange(partition_index.numel())
    reverse_index = slot_of_token.view(Hp, Wp)[:height, :width].reshape(-1)

    mask = None
    if Hp > height or Wp > width or sh or sw:
        padded = torch.zeros(Hp, Wp, dtype=torch.long)
        padded[height:, :] = 1
        padded[:, width:] = 1
        labels = padded.view(-1)[partition_index]
        if sh or sw:
            # Swin's regions, in the rolled frame: the last `shift` rows/columns came around from
            # the other side, the `window - shift` before them did not.
            region_rows = torch.zeros(Hp, dtype=torch.long)
            region_rows[Hp - wh:], region_rows[Hp - sh:] = 1, 2
            region_cols = torch.zeros(Wp, dtype=torch.long)
            region_cols[Wp - ww:], region_cols[Wp - sw:] = 1, 2
            labels = labels * 9 + cut(region_rows[:, None] * 3 + region_cols[None, :])
        windows = labels.view(-1, wh * ww)
        same = windows[:, :, None] == windows[:, None, :]  # a token always shares its own label
        mask = torch.zeros(same.shape).masked_fill_(~same, MASKED).to(device)
    return WindowGrid(height, width, Hp, Wp, window, partition_index.to(device), reverse_index.to(device), mask)


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


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
              dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(d) + mask) v`` through PyTorch's fused kernel.

    ``q``: ``[B, heads, Nq, d]``, ``k``/``v``: ``[B, heads, Nk, d]``; ``attn_mask`` broadcasts to
    ``[B, heads, Nq, Nk]`` (a relative position bias, a padding mask, or both added).
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                          dropout_p=dropout_p if training else 0.0)


def window_attention(qkv: Tensor, num_heads: int, bias: Tensor | None = None, mask: Tensor | None = None,
                     dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """Multi-head attention inside every window: packed ``[B * nW, N, 3C]`` q, k, v -> ``[B * nW, N, C]``.

    ``bias`` (``[heads, N, N]``, e.g. a relative position bias) is shared by all windows; ``mask`` is a
    `WindowGrid`'s ``[nW, N, N]`` per-window mask. SDPA gets them as one 4-D ``[B * nW, heads, N, N]`` tensor
    (a view when B = 1), which keeps it on its fused kernel (a 3-D mask takes the reference path).
    """
    B_, N, C3 = qkv.shape
    q, k, v = qkv.view(B_, N, 3, num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    attn_mask = None if bias is None else bias[None]
    if mask is not None:
        nW = mask.shape[0]
        per_window = mask[:, None] if attn_mask is None else attn_mask + mask[:, None]  # [nW, heads or 1, N, N]
        attn_mask = per_window.expand(B_ // nW, nW, num_heads, N, N).reshape(B_, num_heads, N, N)
    x = attention(q, k, v, attn_mask, dropout_p, training)
    return x.transpose(1, 2).reshape(B_, N, C3 // 3)


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
        if H % p or W % p:
            x = F.pad(x, (0, round_up(W, p) - W, 0, round_up(H, p) - H))
        x = self.proj(x).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x

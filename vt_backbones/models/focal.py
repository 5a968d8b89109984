"""Focal Transformer (Yang et al., NeurIPS 2021) as a dense-prediction backbone.

Follows the official classification code (microsoft/Focal-Transformer ``classification/focal_transformer.py``,
the code of the released checkpoints; the dense-prediction code was never released): a 4x4 stride-4 conv stem
and 2x2 stride-2 conv downsampling, each followed by a LayerNorm (``use_conv_embed=True``: the official
"useconv" variants, a 7x7 stride-4 stem and 3x3 stride-2 downsampling), then pre-norm blocks of focal
self-attention in 7x7 windows, without shift. The queries of a window attend to three groups of keys:

1. its own 7x7 tokens, with Swin's relative position bias (``relative_position_bias_table``);
2. the tokens around it within ``expand_size`` (3), gathered as the official code does: four windows
   displaced diagonally by (+-3, +-3), each keeping the tokens outside the window itself (4 x 33 = 132 keys for
   120 tokens: the 3 tokens above and below the middle column and left and right of the middle row appear
   twice), with one learned bias per (query, key) pair (``relative_position_bias_table_to_neighbors``);
3. the ``focal_window`` x ``focal_window`` (7, 5, 3, 1 in stages 1-4) windows centred on it, each pooled into
   one token by a learned linear pooling of its 49 tokens (``pool``; initialised as the mean), with a
   relative bias between query positions and pooled windows (``relative_position_bias_table_to_windows``).
   Pooled windows outside the map are masked, as the official code does.

One LayerNorm per output (``norm0..3``), as Swin's dense backbone: the ImageNet checkpoints lack them.

Wrapped neighbours: the official code gathers the neighbours with ``torch.roll``, so the windows at the
border of the (window-padded) map take the tokens of the opposite border as neighbours (its masks for that
are computed but unused). We keep that by default, so that the pretrained weights see what they were
trained with and the outputs equal the official code's; ``mask_wrapped=True`` masks those tokens instead.

Stages no larger than the window: where the shorter side of a stage map equals the window (stage 4 at
224x224), the official code takes no neighbour tokens (expand size 0); we mask them instead (a masked key has
weight exactly 0), decided inside the graph from the map's size, so a 224 input gives the official outputs, one
traced graph (torch.compile, ONNX) serves every size, and the neighbour table always takes part in the graph
(a zero gradient at such sizes: DDP without ``find_unused_parameters`` needs every parameter used). Every
stage has a neighbour table (the one of stage 4, absent from the 224 checkpoints, is new: it is needed by
every larger input). Where the shorter side is below the
window, the official code would shrink the window and build tables of other shapes that no checkpoint has:
we keep the 7x7 window (padded and masked) and its neighbours, as for any other map.

Deviations from the official code (none changes the outputs at 224x224):

* Any ``H, W >= 32``: the stem and the downsampling zero-pad their input at the bottom/right to a stride
  multiple (stage sizes ``ceil(H / stride)``); each stage is padded to a window multiple and the padded
  tokens are masked out of every attention (the official code attends to them).
* Pooling never sees padding: a window that is partly padding is pooled from its real tokens, with their
  pooling weights scaled by ``49 / real tokens`` (so the mean stays the mean), while the official code pools
  the zero-padded window.
* Only the attention sees padding: the projections and the MLP run on the real tokens.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import ALL_STAGES, NUM_STAGES, StagedBackbone, stage_channels
from ..engine.recipes import SWIN_NO_DECAY, swin_recipes
from ..convert import FamilyConverter, OurLayout, SourceFormat, StateDict, drop, register_converter, rename
from ..layers import (BlockSettings, DropPath, Mlp, PatchEmbed, WindowGrid, attention, bhwc_to_nchw,
                      cached_per_shape, ceil_div, relative_position_bias, remainder, unpadded_token_index,
                      window_attn_mask, window_grid)
from ..registry import MODELS


def neighbour_offsets(window: int, expand: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Row and column offsets, from a window's top-left token, of its ``4 * (w^2 - (w - e)^2)`` neighbours.

    In the official order: the windows displaced by (+e, +e), (+e, -e), (-e, +e), (-e, -e) (its rolls by
    (-e, -e), (-e, +e), (e, -e), (e, e)), each keeping, row-major, the tokens outside the window. Python ints
    (constants of a traced graph, no boolean indexing).
    """
    displacements = ((expand, expand), (expand, -expand), (-expand, expand), (-expand, -expand))
    offsets = [(i + dr, j + dc) for dr, dc in displacements for i in range(window) for j in range(window)
               if not (0 <= i + dr < window and 0 <= j + dc < window)]
    return tuple(r for r, _ in offsets), tuple(c for _, c in offsets)


@cached_per_shape(maxsize=16)
def window_to_pooled_index(window: int, focal_window: int, device: torch.device | None = None) -> Tensor:
    """``[w^2, f^2]`` index into a ``(w + f - 1)^2`` table for (query token, pooled window) pairs, as official."""
    q, k = torch.arange(window * window, device=device)[:, None], torch.arange(focal_window ** 2, device=device)
    rows = q // window - k // focal_window + (focal_window - 1)  # relative offsets, from 0
    cols = q % window - k % focal_window + (focal_window - 1)
    return rows * (window + focal_window - 1) + cols


@dataclass(frozen=True)
class FocalLayout:
    """Where every window of an ``H x W`` map takes its keys (`focal_layout`).

    ``grid`` partitions the queries (and the tokens to pool); ``local_index`` (``[nW * L]``) picks, for every
    window, its own tokens then its neighbours from the map (flattened; padding reads real tokens, masked); ``pooled_index``
    (``[nW * f^2]``) picks the pooled windows around it; ``key_mask`` (boolean ``[nW, L + f^2]``, True where a
    key may be attended) masks padding, pooled windows outside the map, the neighbours of a map whose shorter
    side is the window (official rule) and, with ``mask_wrapped``, wrapped neighbours; ``pool_weight_scale``
    (``[nW, w^2]``, in the dtype of the pooling weights it scales) is 0 on padded tokens and
    ``w^2 / real tokens`` elsewhere.
    """
    grid: WindowGrid
    local_index: Tensor
    pooled_index: Tensor
    key_mask: Tensor
    pool_weight_scale: Tensor


@cached_per_shape(maxsize=32)
def focal_layout(height: int, width: int, window: int, expand: int, focal_window: int, mask_wrapped: bool,
                 device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> FocalLayout:
    """The `FocalLayout` of an ``H x W`` map (sizes may be symbolic: torch ops on aranges, no branch on them).

    The official code takes no neighbours (expand size 0) where ``min(H, W) == window``: here the neighbours
    are then masked, which gives the same attention (a masked key has weight exactly 0) from one graph for
    every size, and keeps the neighbour table in the autograd graph (a zero gradient, not none: DDP with
    ``find_unused_parameters=False`` needs every parameter to take part).
    """
    grid = window_grid(height, width, (window, window), device=device)
    Hp, Wp = grid.padded_height, grid.padded_width
    nWh, nWw = ceil_div(height, window), ceil_div(width, window)
    N = window * window

    # Own tokens (row-major), then the neighbours; rows/columns in the unwrapped padded frame.
    nr, nc = neighbour_offsets(window, expand)
    own = torch.arange(N, device=device)
    dr = torch.cat([own // window, torch.tensor(nr, dtype=torch.long, device=device)])
    dc = torch.cat([own % window, torch.tensor(nc, dtype=torch.long, device=device)])
    win = torch.arange(nWh * nWw, device=device)[:, None]
    rows, cols = win // nWw * window + dr, remainder(win, nWw) * window + dc  # [nW, L]
    wrapped = (rows < 0) | (rows >= Hp) | (cols < 0) | (cols >= Wp)
    real = ((rows < height) & (cols < width))[:, :N].to(dtype)  # own tokens: never wrapped
    rows, cols = remainder(rows, Hp), remainder(cols, Wp)  # torch.roll's wrap-around
    local_masked = (rows >= height) | (cols >= width)  # padding
    if mask_wrapped:
        local_masked = local_masked | wrapped
    short_side = torch.minimum(torch.scalar_tensor(height, dtype=torch.long, device=device),
                               torch.scalar_tensor(width, dtype=torch.long, device=device))
    is_neighbour = torch.arange(dr.numel(), device=device) >= N
    local_masked = local_masked | (is_neighbour & (short_side == window))
    local_index = unpadded_token_index(rows, cols, height, width).reshape(-1)  # padding is masked above

    # Pooled windows: the focal_window x focal_window around each window (nn.Unfold's order and zero border).
    k = torch.arange(focal_window ** 2, device=device)
    prow = win // nWw + k // focal_window - focal_window // 2  # [nW, f^2]
    pcol = remainder(win, nWw) + k % focal_window - focal_window // 2
    pooled_masked = (prow < 0) | (prow >= nWh) | (pcol < 0) | (pcol >= nWw)
    pooled_index = torch.where(pooled_masked, 0, prow * nWw + pcol).reshape(-1)  # masked keys: any window

    key_mask = ~torch.cat([local_masked, pooled_masked], dim=1)
    scale = real * N / real.sum(dim=1, keepdim=True)
    return FocalLayout(grid, local_index, pooled_index, key_mask, scale)


class FocalAttention(nn.Module):
    """Focal self-attention of the window tokens to their own, neighbour and pooled-window keys.

    ``qkv`` and ``proj`` are applied on the real tokens; ``forward`` maps the normalised tokens ``[B, H, W, C]``
    and the pooled windows ``[B, nW, C]`` to ``[B, H, W, C]``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, expand_size: int, focal_window: int,
                 qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.window_size = window_size
        self.expand_size = expand_size
        self.focal_window = focal_window
        self.attn_drop = attn_drop
        w, e = window_size, expand_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * w - 1) ** 2, num_heads))
        self.relative_position_bias_table_to_neighbors = nn.Parameter(
            torch.zeros(1, num_heads, w * w, 4 * (w * w - (w - e) ** 2)))
        self.relative_position_bias_table_to_windows = nn.Parameter(
            torch.zeros(num_heads, (w + focal_window - 1) ** 2))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def bias(self) -> Tensor:
        """``[heads, w^2, L + f^2]``: the three position biases in key order."""
        w = self.window_size
        index = window_to_pooled_index(w, self.focal_window, self.relative_position_bias_table_to_windows.device)
        return torch.cat([relative_position_bias(self.relative_position_bias_table, (w, w)),
                          self.relative_position_bias_table_to_neighbors[0],
                          self.relative_position_bias_table_to_windows[:, index]], dim=-1)

    def forward(self, x: Tensor, pooled: Tensor, layout: FocalLayout) -> Tensor:
        B, H, W, C = x.shape
        grid, heads = layout.grid, self.num_heads
        nW, N = grid.num_windows, self.window_size ** 2
        w_q, w_kv = self.qkv.weight.split([C, 2 * C])
        b_q, b_kv = self.qkv.bias.split([C, 2 * C]) if self.qkv.bias is not None else (None, None)
        q = grid.partition(F.linear(x, w_q, b_q)).view(B * nW, N, heads, -1).transpose(1, 2)

        kv = F.linear(x, w_kv, b_kv).reshape(B, -1, 2 * C)
        local = kv.index_select(1, layout.local_index).view(B, nW, -1, 2 * C)
        pooled = F.linear(pooled, w_kv, b_kv).index_select(1, layout.pooled_index).view(B, nW, -1, 2 * C)
        kv = torch.cat([local, pooled], dim=2)  # [B, nW, L + f^2, 2C]
        k, v = kv.view(B * nW, -1, 2, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)

        attn_mask = window_attn_mask(self.bias(), layout.key_mask[:, None, :], B * nW)
        out = attention(q, k, v, attn_mask, self.attn_drop, self.training)  # [B * nW, heads, N, d]
        return self.proj(grid.reverse(out.transpose(1, 2).reshape(B * nW, N, C)))


class FocalBlock(nn.Module):
    """Pre-norm block: focal self-attention, then MLP. ``[B, H, W, C]`` (+ the map's `FocalLayout`) -> same shape.

    `PreNormBlock`'s skeleton, plus the learned pooling of the windows (registered first, as the official
    ``pool_layers``) whose output the attention takes beside the tokens.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, expand_size: int, focal_window: int,
                 settings: BlockSettings, drop_path: float) -> None:
        super().__init__()
        self.pool = nn.Linear(window_size * window_size, 1)  # one token per window, from its w^2 tokens
        self.norm1 = nn.LayerNorm(dim, eps=settings.norm_eps)
        self.attn = FocalAttention(dim=dim, num_heads=num_heads, window_size=window_size, expand_size=expand_size,
                                   focal_window=focal_window, qkv_bias=settings.qkv_bias,
                                   attn_drop=settings.attn_drop)
        self.drop = nn.Dropout(settings.drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=settings.norm_eps)
        self.mlp = Mlp(dim, int(dim * settings.mlp_ratio), drop=settings.drop)

    def pool_windows(self, x: Tensor, layout: FocalLayout) -> Tensor:
        """``[B, H, W, C]`` -> ``[B, nW, C]``: the learned pooling of each window's real tokens (module docstring)."""
        nW = layout.grid.num_windows
        windows = layout.grid.partition(x).view(x.shape[0], nW, -1, x.shape[-1])
        weight = self.pool.weight * layout.pool_weight_scale  # [nW, w^2], 0 on padding
        return torch.einsum('bwnc,wn->bwc', windows, weight) + self.pool.bias

    def forward(self, x: Tensor, layout: FocalLayout) -> Tensor:
        y = self.norm1(x)
        x = x + self.drop_path(self.drop(self.attn(y, self.pool_windows(y, layout), layout)))
        del y  # not alive during the MLP (its widest activations)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def conv_embed(in_channels: int, embed_dims: int, stride: int, overlapping: bool) -> PatchEmbed:
    """Conv + LayerNorm, ``[B, C_in, H, W]`` -> ``[B, ceil(H / s), ceil(W / s), C]`` (input zero-padded to a
    stride multiple): kernel = stride, or with ``overlapping`` the official "useconv" convs (7x7 padding 2 for
    the stride-4 stem, 3x3 padding 1 for stride 2)."""
    kernel, padding = ((7, 2) if stride == 4 else (3, 1)) if overlapping else (stride, 0)
    return PatchEmbed(in_channels, embed_dims, patch_size=stride, kernel_size=kernel, padding=padding)


class FocalStage(nn.Module):
    """The blocks of one stage, then the downsampling that feeds the next stage. The layout is cached per shape."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, expand_size: int,
                 focal_window: int, mask_wrapped: bool, settings: BlockSettings, drop_paths: Sequence[float],
                 downsample: bool, use_conv_embed: bool) -> None:
        super().__init__()
        self.window_size, self.expand_size, self.focal_window = window_size, expand_size, focal_window
        self.mask_wrapped = mask_wrapped
        self.blocks = nn.ModuleList([
            FocalBlock(dim=dim, num_heads=num_heads, window_size=window_size, expand_size=expand_size,
                       focal_window=focal_window, settings=settings, drop_path=drop_paths[i])
            for i in range(depth)])
        self.downsample = conv_embed(dim, 2 * dim, stride=2, overlapping=use_conv_embed) if downsample else None

    def forward(self, x: Tensor, run_block: Callable[..., Tensor]) -> Tensor:
        _, H, W, _ = x.shape
        layout = focal_layout(H, W, self.window_size, self.expand_size, self.focal_window, self.mask_wrapped,
                              x.device, self.blocks[0].pool.weight.dtype)
        for block in self.blocks:
            x = run_block(block, x, layout)
        return x


@MODELS.register_module()
class FocalTransformer(StagedBackbone):
    """Focal Transformer backbone.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'`` or a dict with ``embed_dims``, ``depths`` and ``num_heads``.
        use_conv_embed: the official "useconv" variants: 7x7 conv stem, 3x3 conv downsampling.
        mask_wrapped: mask the neighbour tokens that the official code wraps around from the opposite border
            of the map (default: keep them, as the official code and its checkpoints).
        window_size, expand_size, focal_windows: 7, 3 and (7, 5, 3, 1) in every official model.
        drop_path_rate: stochastic depth, linear over all blocks (official default 0.1).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    }
    variants = {'focal_t': 'tiny', 'focal_s': 'small', 'focal_b': 'base'}
    # Dense configs never released: Swin's recipes.
    recipes = swin_recipes(no_decay=SWIN_NO_DECAY)

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, use_conv_embed: bool = False,
                 mask_wrapped: bool = False, window_size: int = 7, expand_size: int = 3,
                 focal_windows: Sequence[int] = (7, 5, 3, 1), mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        if window_size < 2:
            raise ValueError(f'window_size must be >= 2, got {window_size!r}')
        if not 0 < expand_size < window_size:
            raise ValueError(f'expand_size must be in 1..window_size - 1 = {window_size - 1}, got {expand_size!r}')
        if len(focal_windows) != NUM_STAGES or any(f < 1 or f % 2 == 0 for f in focal_windows):
            raise ValueError(f'focal_windows must be {NUM_STAGES} odd sizes >= 1 (one per stage), '
                             f'got {focal_windows!r}')
        settings = BlockSettings(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate)
        self.num_features = stage_channels(self.arch['embed_dims'])
        self.patch_embed = conv_embed(in_channels, self.num_features[0], stride=4, overlapping=use_conv_embed)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList([
            FocalStage(**stage, window_size=window_size, expand_size=expand_size, focal_window=focal_window,
                       mask_wrapped=mask_wrapped, settings=settings, use_conv_embed=use_conv_embed)
            for stage, focal_window in zip(self.stage_arguments(drop_path_rate), focal_windows)])
        self.add_output_norms()

    def reset_parameters(self) -> None:
        """As the official code: truncated normal linears, zero window bias table, truncated normal (std 0.02)
        neighbour and pooled-window tables; the pooling starts as the mean (module docstring)."""
        super().reset_parameters()
        for block in self.blocks():
            nn.init.constant_(block.pool.weight, 1.0 / block.pool.in_features)
            nn.init.zeros_(block.pool.bias)
            nn.init.zeros_(block.attn.relative_position_bias_table)
            nn.init.trunc_normal_(block.attn.relative_position_bias_table_to_neighbors, std=0.02)
            nn.init.trunc_normal_(block.attn.relative_position_bias_table_to_windows, std=0.02)

    def downsample_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        return stage.downsample(bhwc_to_nchw(x))  # a conv embedding, like the stem


# ---- weight conversion --------------------------------------------------------------------------
_DROP = {
    r'head\..*': 'classification head',
    r'norm\.(weight|bias)': 'final classification norm',
    r'.*\.(relative_position_index(_\d+)?|valid_ind_rolled|valid_ind_unfold_\d+)': 'index buffer, rebuilt per input size',
}


def _from_official(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    sd = rename(sd, [(r'\.pool_layers\.0\.', '.pool.'),
                     (r'\.relative_position_bias_table_to_windows\.0$', '.relative_position_bias_table_to_windows')])
    return drop(sd, _DROP)


USECONV_STEM_KERNEL = 7  # conv_embed's overlapping stem: how a "useconv" checkpoint, official or ours, is told apart


def _stem_kernel(sd: Mapping[str, Tensor]) -> int | None:
    stem = sd.get('patch_embed.proj.weight')
    return None if stem is None else stem.shape[-1]


def _is_official(sd: Mapping[str, Tensor], stem_kernel: int) -> bool:
    return 'layers.0.blocks.0.pool_layers.0.weight' in sd and _stem_kernel(sd) == stem_kernel


def _guess_variant(sd: Mapping[str, Tensor]) -> str | None:
    if 'patch_embed.proj.weight' not in sd:
        return None
    found = (sd['patch_embed.proj.weight'].shape[0],
             sum(1 for k in sd if re.fullmatch(r'layers\.2\.blocks\.\d+\.norm1\.weight', k)))
    return FocalTransformer.variant_where(lambda s: (s['embed_dims'], s['depths'][2]), found)


register_converter(FamilyConverter(
    family='FocalTransformer',
    formats=[
        SourceFormat('official', functools.partial(_is_official, stem_kernel=4), _from_official),
        # The "useconv" checkpoints (7x7 stem): they load into FocalTransformer(use_conv_embed=True).
        SourceFormat('official_useconv', functools.partial(_is_official, stem_kernel=USECONV_STEM_KERNEL),
                     _from_official, model_kwargs=dict(use_conv_embed=True)),
    ],
    our_layouts=(OurLayout(dict(use_conv_embed=True), lambda sd: _stem_kernel(sd) == USECONV_STEM_KERNEL),),
    guess_variant=_guess_variant,
    # Output norms; stage 4's neighbour table, which the 224 checkpoints lack (their stage 4 is one window).
    new_keys=(r'norm[0-3]\.(weight|bias)', r'layers\.3\.blocks\.\d+\.attn\.relative_position_bias_table_to_neighbors'),
))

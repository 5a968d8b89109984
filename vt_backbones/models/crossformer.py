"""CrossFormer (Wang et al., ICLR 2022) as a dense-prediction backbone.

Follows the official dense backbone (cheerss/CrossFormer ``models/crossformer_backbone.py``, behind the
published COCO and ADE20K numbers): cross-scale embedding (four convolutions of kernels 4/8/16/32 at stride 4)
and cross-scale merging (LayerNorm, then kernels 2/4 at stride 2), blocks alternating short-distance attention
(SDA: adjacent ``G x G`` groups) and long-distance attention (LDA: tokens sampled every ``I`` rows/columns),
a dynamic position bias (an MLP over the relative offsets of the actual group shape), padded tokens masked out
of the attention, and no output norms (the official dense backbone returns the raw stage outputs).

LDA groups: by default the interval ``I`` is fixed (8, 4, 2, 1 per stage) as in the paper and the official
dense code, so a group holds ``ceil(H / I) x ceil(W / I)`` tokens and grows with the image (global attention
in stage 4). ``lda_mode='fixed_group'`` gives the later official variant (CrossFormer++ dense code): ``G x G``
groups at stride ``I``, the map padded to a multiple of ``G * I``. At 224x224 both equal the official
classification model.

Deviations:

* A map no larger than the group (``min(H, W) <= G``) makes a block use SDA with groups of ``min(H, W)`` for
  that call only; the official code switches the block to SDA and shrinks its group size permanently
  (``self.lsda_flag = 0``), so later, larger inputs keep the small groups.
* Inputs of any size: the image is zero-padded at the bottom/right to a multiple of 4 before the embedding
  convolutions and every merging input to an even size (the official code needs multiples of 32), so stage
  ``i`` has ``ceil(H / 2**(i+2))`` rows. The convolutions keep the official symmetric padding, so all kernels
  stay aligned on the same grid.
* Only the attention sees padded tokens: the projections and the MLP run on the real tokens.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import statically_known_false, statically_known_true

from ..base import ALL_STAGES, NUM_STAGES, StagedBackbone, stage_channels
from ..engine.recipes import Recipe
from ..convert import FamilyConverter, SourceFormat, StateDict, drop, register_converter
from ..layers import (BlockSettings, PreNormBlock, WindowGrid, cached_per_shape, interleaved_window_grid,
                      pad_to_multiple, relative_position_bias, shorter_side, window_attention, window_grid)
from ..registry import MODELS

LDA_MODES = ('fixed_interval', 'fixed_group')


@cached_per_shape(maxsize=32)
def relative_offsets(gh: int, gw: int, device: torch.device | None = None,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """``[(2gh-1)(2gw-1), 2]`` (row, column) offsets between tokens of a ``gh x gw`` group, in the order of
    `layers.relative_position_index` — the input of the dynamic position bias, in the dtype of its weights."""
    rows, cols = torch.arange(1 - gh, gh), torch.arange(1 - gw, gw)
    offsets = torch.stack(torch.meshgrid(rows, cols, indexing='ij'), dim=-1).view(-1, 2)
    return offsets.to(device=device, dtype=dtype)


class DynamicPosBias(nn.Module):
    """The MLP mapping a relative offset ``(dy, dx)`` to one bias per head: a linear to ``width``, then three
    (LayerNorm, ReLU, linear) steps, the last to ``num_heads``. ``[T, 2]`` -> ``[T, num_heads]``."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        self.pos_proj = nn.Linear(2, width)
        self.pos1 = self._step(width, width)
        self.pos2 = self._step(width, width)
        self.pos3 = self._step(width, num_heads)

    @staticmethod
    def _step(width: int, out: int) -> nn.Sequential:
        return nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, out))

    def forward(self, offsets: Tensor) -> Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class GroupAttention(nn.Module):
    """Multi-head self-attention inside groups with the dynamic position bias of the group's shape.

    ``[B, H, W, C]`` (+ the block's grouping as a `WindowGrid`) -> same shape. ``qkv`` and ``proj`` run on the
    real tokens; only the attention within the groups sees the padding (masked).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.pos = DynamicPosBias(dim // 16, num_heads)  # the official width: (dim // 4) // 4
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        # The MLP runs every call (its weights train); only the offsets and the gather index are cached.
        table = self.pos(relative_offsets(*grid.window, device=x.device, dtype=self.pos.pos_proj.weight.dtype))
        bias = relative_position_bias(table, grid.window)  # [heads, N, N]
        groups = window_attention(grid.partition(self.qkv(x)), self.num_heads, bias, grid.mask, self.attn_drop,
                                  self.training)
        return self.proj(grid.reverse(groups))


class CrossFormerBlock(PreNormBlock):
    """Pre-norm block: SDA or LDA, then MLP. ``[B, H, W, C]`` -> same shape; the grouping comes as a `WindowGrid`
    (see `CrossFormerStage.grid`)."""

    def __init__(self, dim: int, num_heads: int, long_distance: bool, settings: BlockSettings,
                 drop_path: float) -> None:
        super().__init__(dim=dim, attn=GroupAttention(dim=dim, num_heads=num_heads, qkv_bias=settings.qkv_bias,
                                                      attn_drop=settings.attn_drop),
                         settings=settings, drop_path=drop_path)
        self.long_distance = long_distance


def cross_scale_convs(in_channels: int, out_channels: int, kernels: Sequence[int], stride: int) -> nn.ModuleList:
    """Convolutions of several kernel sizes at one stride whose outputs concatenate to ``out_channels``.

    The official split halves the channels per kernel, the last two kernels sharing the last share (stem: D/2,
    D/4, D/8, D/8; merging: C, C). Each kernel is padded by ``(k - stride) / 2`` on every side, so all of them
    are centred on the same ``stride`` grid.
    """
    widths = [out_channels // 2 ** (i + 1) for i in range(len(kernels) - 1)]
    widths.append(out_channels - sum(widths))
    return nn.ModuleList([nn.Conv2d(in_channels, width, k, stride, padding=(k - stride) // 2)
                          for k, width in zip(kernels, widths)])


def apply_cross_scale(convs: nn.ModuleList, x: Tensor, stride: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, ceil(H/s), ceil(W/s), C_out]``: zero-pads the bottom/right to a multiple of the
    stride (the official code needs exact multiples), runs every convolution and concatenates their outputs."""
    x = pad_to_multiple(x, stride)
    return torch.cat([conv(x) for conv in convs], dim=1).permute(0, 2, 3, 1)


class CrossScaleEmbedding(nn.Module):
    """The stem: kernels 4, 8, 16, 32 at stride 4, then LayerNorm. ``[B, C_in, H, W]`` -> ``[B, ceil(H/4), ceil(W/4), D]``."""

    def __init__(self, in_channels: int, embed_dims: int) -> None:
        super().__init__()
        self.projs = cross_scale_convs(in_channels, embed_dims, (4, 8, 16, 32), stride=4)
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(apply_cross_scale(self.projs, x, stride=4))


class CrossScaleMerging(nn.Module):
    """LayerNorm, then kernels 2 and 4 at stride 2 (C channels each). ``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.reductions = cross_scale_convs(dim, 2 * dim, (2, 4), stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return apply_cross_scale(self.reductions, self.norm(x).permute(0, 3, 1, 2), stride=2)


class CrossFormerStage(nn.Module):
    """Blocks alternating SDA and LDA, then the cross-scale merging that feeds the next stage."""

    def __init__(self, dim: int, depth: int, num_heads: int, group_size: int, interval: int, lda_mode: str,
                 settings: BlockSettings, drop_paths: Sequence[float], downsample: bool) -> None:
        super().__init__()
        self.group_size = group_size
        self.interval = interval
        self.lda_mode = lda_mode
        self.blocks = nn.ModuleList([
            CrossFormerBlock(dim=dim, num_heads=num_heads, long_distance=i % 2 == 1, settings=settings,
                             drop_path=drop_paths[i])
            for i in range(depth)])
        self.downsample = CrossScaleMerging(dim) if downsample else None

    def is_small(self, H: int, W: int) -> bool:
        """The official rule for concrete sizes: a map whose shorter side fits in one group."""
        return min(H, W) <= self.group_size

    def grid(self, H: int, W: int, long_distance: bool, device: torch.device, small: bool | None = None) -> WindowGrid:
        """The grouping of an ``H x W`` map for an SDA or LDA block (cached per shape by `window_grid`). ``small``:
        whether the official rule for small maps applies (``min(H, W) <= G``: SDA over groups of the shorter side);
        decided here from concrete sizes, by the caller for symbolic ones."""
        G, I = self.group_size, self.interval
        if small is None:
            small = self.is_small(H, W)
        if small:
            short = shorter_side(H, W)
            return window_grid(H, W, (short, short), device=device)
        if not long_distance:
            return window_grid(H, W, (G, G), device=device)
        if self.lda_mode == 'fixed_interval':
            return interleaved_window_grid(H, W, (I, I), device)
        return window_grid(H, W, (G, G), device=device, dilation=(I, I))

    def run_blocks(self, x: Tensor, run_block: Callable[..., Tensor], small: bool | None = None) -> Tensor:
        H, W = x.shape[1], x.shape[2]
        if small is None:
            small = self.is_small(H, W)
        short_distance = self.grid(H, W, False, x.device, small)
        # A small map has one grouping for both kinds of block: built (and traced) once.
        grids = [short_distance, short_distance if small else self.grid(H, W, True, x.device, small)]
        for block in self.blocks:
            x = run_block(block, x, grids[block.long_distance])
        return x

    def forward(self, x: Tensor, run_block: Callable[..., Tensor]) -> Tensor:
        small = shorter_side(x.shape[1], x.shape[2]) <= self.group_size
        if isinstance(small, torch.SymBool):
            if statically_known_true(small) or statically_known_false(small):  # e.g. stage 1 of an input >= 32
                return self.run_blocks(x, run_block, statically_known_true(small))
            # Traced with symbolic sizes (ONNX export): the graph holds both groupings and picks one by the size.
            # A Python branch would fix the traced size's choice; arithmetic on the group sizes instead of a
            # branch makes torch.export's symbolic reasoning explode. The branches return the map flattened:
            # torch.cond cannot match the symbolic strides of a 4-D one.
            def branch(small: bool) -> Callable[[Tensor], Tensor]:
                return lambda x: self.run_blocks(x, run_block, small).flatten()
            return torch.cond(small, branch(True), branch(False), (x,)).view(x.shape)
        return self.run_blocks(x, run_block)


@MODELS.register_module()
class CrossFormer(StagedBackbone):
    """CrossFormer backbone.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` or a dict with ``embed_dims``, ``depths`` and
            ``num_heads``.
        group_size: ``G``, the side of an SDA group (and of an LDA group with ``lda_mode='fixed_group'``).
        intervals: ``I`` per stage, the sampling interval of LDA.
        lda_mode: ``'fixed_interval'`` (paper and official dense code: ``ceil(H/I) x ceil(W/I)`` tokens per LDA
            group) or ``'fixed_group'`` (``G x G`` tokens every ``I`` rows/columns, the map padded to a multiple of
            ``G * I``). Both equal the classification model at 224x224.
        drop_path_rate: stochastic depth, linear over all blocks (official default 0.1; the official detection
            and segmentation wrappers use 0.2 / 0.3 / 0.5 for S / B / L).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=64, depths=(1, 1, 8, 6), num_heads=(2, 4, 8, 16)),
        'small': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'large': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    }
    block_kinds = 2  # SDA and LDA
    variants = {'crossformer_t': 'tiny', 'crossformer_s': 'small', 'crossformer_b': 'base',
                'crossformer_l': 'large'}
    recipes = {
        # cheerss/CrossFormer detection/configs/mask_rcnn_crossformer_*_fpn_1x_coco.py (no 3x released: the same)
        'mmdet': Recipe(lr=1e-4, weight_decay=1e-4),
        # cheerss/CrossFormer segmentation/configs/upernet_crossformer_*_ade20k.py
        'mmseg': Recipe(lr=6e-5, weight_decay=0.01, no_decay=('norm',)),
    }

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, group_size: int = 7,
                 intervals: Sequence[int] = (8, 4, 2, 1), lda_mode: str = 'fixed_interval', mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f'group_size must be a positive int, got {group_size!r}')
        intervals = tuple(intervals)
        if len(intervals) != NUM_STAGES or any(not isinstance(i, int) or i < 1 for i in intervals):
            raise ValueError(f'intervals must be {NUM_STAGES} positive ints (one per stage), got {intervals!r}')
        if lda_mode not in LDA_MODES:
            raise ValueError(f'lda_mode must be one of {LDA_MODES}, got {lda_mode!r}')
        settings = BlockSettings(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate)
        self.num_features = stage_channels(self.arch['embed_dims'])
        self.patch_embed = CrossScaleEmbedding(in_channels, self.num_features[0])
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList([
            CrossFormerStage(**stage, group_size=group_size, interval=interval, lda_mode=lda_mode, settings=settings)
            for stage, interval in zip(self.stage_arguments(drop_path_rate), intervals)])


# ---- weight conversion --------------------------------------------------------------------------
_DROP = {
    r'head\..*': 'classification head',
    r'norm\.(weight|bias)': 'final classification norm',
    r'.*\.attn\.biases': 'position offsets buffer, rebuilt per group shape',
    r'.*\.attn\.relative_position_index': 'index buffer, rebuilt per group shape',
    r'.*\.attn_mask': 'attention mask buffer, rebuilt per input size',
}


def _from_official(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    return drop(sd, _DROP)


def _guess_variant(sd: Mapping[str, Tensor]) -> str | None:
    try:
        embed_dims = sd['patch_embed.norm.weight'].shape[0]
    except KeyError:
        return None
    depths = tuple(sum(1 for k in sd if re.fullmatch(rf'layers\.{i}\.blocks\.\d+\.norm1\.weight', k))
                   for i in range(NUM_STAGES))
    return CrossFormer.variant_where(lambda s: (s['embed_dims'], tuple(s['depths'])), (embed_dims, depths))


register_converter(FamilyConverter(
    family='CrossFormer',
    formats=[
        # The classification checkpoints and the backbone of the official detection/segmentation ones.
        SourceFormat('official', lambda sd: 'patch_embed.projs.0.weight' in sd
                     and 'layers.0.blocks.0.attn.pos.pos_proj.weight' in sd, _from_official),
    ],
    guess_variant=_guess_variant,
))

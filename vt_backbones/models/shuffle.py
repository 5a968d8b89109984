"""Shuffle Transformer (Huang et al., arXiv 2106.03650) as a dense-prediction backbone.

Follows the official model (mulinmeng/Shuffle-Transformer ``models/shuffle_transformer.py``; the authors
released no detection or segmentation code), with its module and key names:

* NCHW feature maps throughout, BatchNorm and ReLU6;
* stem ``to_token``: 3x3 stride-2 conv to 32 channels, BN, ReLU6, 3x3 stride-2 conv to C, BN, ReLU6, 1x1 conv;
* four stages of (window block, shuffled-window block) pairs; stages 2-4 start with a patch merging
  (BN, then a 2x2 stride-2 conv without bias) doubling the channels; head dimension 32;
* a block: ``x + attn(norm1(x))``, then the neighbour-window connection ``x + local(norm2(x))`` (a depth-wise
  conv with kernel = window size, with bias, not under drop path), then ``x + mlp(norm3(x))`` (1x1 convs,
  ReLU6). The attention projects with 1x1 convs (``to_qkv`` without bias, ``proj`` with bias) and adds
  Swin's learned relative position bias inside 7x7 windows: adjacent tokens in the window block, tokens
  taken every ``(H / 7, W / 7)`` rows/columns across the whole map in the shuffled block (the official
  spatial shuffle);
* drop path constant within a stage and linear across the stages (``linspace(0, rate, 4)``: stage 1 never
  drops); the official attention dropout is defined but never applied, so there is no such argument here;
* no output norms: the outputs are the stage outputs as the official code computes them.

Deviations from the official code (none of them changes the outputs at 224x224 or at any input whose
stage maps are multiples of the window, i.e. sides that are multiples of 224):

* Any ``H, W >= 32`` (the official code needs every stage map to be a multiple of the window). The
  attention pads each stage's (normalised, projected) map at the bottom/right to a window multiple and
  masks padded tokens out of the attention; the shuffled window then takes tokens every
  ``(Hp / 7, Wp / 7)`` rows/columns of the padded ``Hp x Wp`` map. Only the attention sees padding: the
  BatchNorms (their statistics), the projections, the MLP and the neighbour-window conv run on the real
  map, and the patch merging zero-pads an odd map by one row/column (a conv's own border) after its
  BatchNorm, giving ``ceil(H / 2) x ceil(W / 2)``.
* The norms are built from ``norm_cfg`` (default BN; the configs use SyncBN) and ``norm_eval`` keeps them
  in eval mode.
* The 1x1 convs keep the official parameters but are computed as matmuls on channels-last maps (`pointwise`).
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from ..base import ALL_STAGES, NUM_STAGES, VisionBackbone, stage_channels
from ..engine.recipes import SWIN_NO_DECAY, swin_recipes
from ..convert import FamilyConverter, SourceFormat, StateDict, drop, register_converter, resize_relative_position_table
from ..layers import (BlockSettings, DropPath, WindowGrid, pad_to_multiple, relative_position_bias,
                      spanning_window_grid, window_attention, window_grid)
from ..registry import MODELS

STEM_CHANNELS = 32  # official token_dim


def norm_layer(norm_cfg: dict, channels: int) -> nn.Module:
    return build_norm_layer(norm_cfg, channels)[1]


def pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 conv (official parameter layout) on a channels-last map, as a matmul:
    ``[B, H, W, C_in]`` -> ``[B, H, W, C_out]``. Same result as the conv; on CPU PyTorch sends small-batch
    single-thread 1x1 convs to its slow im2col kernel (Shuffle-T train step at 512x512: 1.65x Swin-T's time
    with the convs, 1.36x with the matmuls)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class ConvStem(nn.Module):
    """The official ``to_token``: ``[B, C_in, H, W]`` -> ``[B, C, ceil(H / 4), ceil(W / 4)]``."""

    def __init__(self, in_channels: int, embed_dims: int, norm_cfg: dict) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, STEM_CHANNELS, 3, stride=2, padding=1),
                                   norm_layer(norm_cfg, STEM_CHANNELS), nn.ReLU6(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(STEM_CHANNELS, embed_dims, 3, stride=2, padding=1),
                                   norm_layer(norm_cfg, embed_dims), nn.ReLU6(inplace=True))
        self.conv3 = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class ShuffleAttention(nn.Module):
    """Multi-head self-attention inside the windows of a `WindowGrid` (plain or shuffled), with Swin's
    relative position bias. ``[B, C, H, W]`` -> same shape.

    ``to_qkv`` and ``proj`` (1x1 convs) run on the real map; the grid pads the projected map, partitions it
    and masks the padded tokens.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = (window_size, window_size)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        windows = grid.partition(pointwise(self.to_qkv, x.permute(0, 2, 3, 1)))  # [B * nW, N, 3C]
        bias = relative_position_bias(self.relative_position_bias_table, self.window)
        out = grid.reverse(window_attention(windows, self.num_heads, bias, grid.mask))  # [B, H, W, C]
        return pointwise(self.proj, out).permute(0, 3, 1, 2)


class ConvMlp(nn.Module):
    """The official MLP on NCHW maps: 1x1 conv, ReLU6, dropout, 1x1 conv, dropout."""

    def __init__(self, dim: int, hidden_dim: int, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.ReLU6()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(pointwise(self.fc1, x.permute(0, 2, 3, 1))))
        return self.drop(pointwise(self.fc2, x)).permute(0, 3, 1, 2)


class ShuffleBlock(nn.Module):
    """Attention (plain or shuffled windows, given by the grid), neighbour-window conv, MLP. ``[B, C, H, W]``."""

    def __init__(self, dim: int, num_heads: int, window_size: int, settings: BlockSettings, norm_cfg: dict,
                 drop_path: float) -> None:
        super().__init__()
        self.norm1 = norm_layer(norm_cfg, dim)
        self.attn = ShuffleAttention(dim=dim, num_heads=num_heads, window_size=window_size, qkv_bias=settings.qkv_bias)
        self.drop = nn.Dropout(settings.drop)  # the official proj_drop
        self.local = nn.Conv2d(dim, dim, window_size, padding=window_size // 2, groups=dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = norm_layer(norm_cfg, dim)
        self.mlp = ConvMlp(dim, int(dim * settings.mlp_ratio), settings.drop)
        self.norm3 = norm_layer(norm_cfg, dim)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x), grid)))
        x = x + self.local(self.norm2(x))  # not under drop path, as the official code
        return x + self.drop_path(self.mlp(self.norm3(x)))


class NormConvMerging(nn.Module):
    """Shuffle Transformer's (official name ``PatchMerging``): BN, then a 2x2 stride-2 conv.
    ``[B, C, H, W]`` -> ``[B, C_out, ceil(H / 2), ceil(W / 2)]``."""

    def __init__(self, dim: int, out_dim: int, norm_cfg: dict) -> None:
        super().__init__()
        self.norm = norm_layer(norm_cfg, dim)
        self.reduction = nn.Conv2d(dim, out_dim, 2, stride=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # The conv's zero border, after the norm (its statistics see only the real map).
        return self.reduction(pad_to_multiple(self.norm(x), 2))


class ShuffleStage(nn.Module):
    """Optional patch merging, then (window block, shuffled-window block) pairs. ``[B, C_in, H, W]`` ->
    ``[B, C, H', W']``.

    The plain grid cuts the map (padded to ``Hp x Wp``, window multiples) into adjacent windows; the
    shuffled grid takes a window's tokens every ``(Hp / ws, Wp / ws)`` rows/columns, i.e. the official
    ``(ws1 hh) (ws2 ww)`` rearrangement. Both are cached per map shape.
    """

    def __init__(self, in_dim: int, dim: int, depth: int, num_heads: int, window_size: int, settings: BlockSettings,
                 norm_cfg: dict, drop_path: float) -> None:
        super().__init__()
        self.window = (window_size, window_size)
        self.patch_partition = NormConvMerging(in_dim, dim, norm_cfg) if in_dim != dim else None
        self.layers = nn.ModuleList([
            nn.ModuleList([ShuffleBlock(dim=dim, num_heads=num_heads, window_size=window_size, settings=settings,
                                        norm_cfg=norm_cfg, drop_path=drop_path)
                           for _ in range(2)])
            for _ in range(depth // 2)])

    def grids(self, height: int, width: int, device) -> tuple[WindowGrid, WindowGrid]:
        return (window_grid(height, width, self.window, (0, 0), device),
                spanning_window_grid(height, width, self.window, device))

    def forward(self, x: Tensor, run_block: Callable[..., Tensor]) -> Tensor:
        if self.patch_partition is not None:
            x = self.patch_partition(x)
        plain, shuffled = self.grids(x.shape[2], x.shape[3], x.device)
        for window_block, shuffled_block in self.layers:
            x = run_block(window_block, x, plain)
            x = run_block(shuffled_block, x, shuffled)
        return x


@MODELS.register_module()
class ShuffleTransformer(VisionBackbone):
    """Shuffle Transformer backbone (see the module docstring).

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'`` or a dict with ``embed_dims``, ``depths`` (even, one
            per stage) and ``num_heads`` (stage ``i`` has ``embed_dims * 2**i`` channels).
        window_size: 7 as every official model; odd, so the neighbour-window conv keeps the map size.
        mlp_ratio: hidden channels of the MLP over its input channels.
        drop_rate: dropout after the attention projection and in the MLP.
        drop_path_rate: stochastic depth of the last stage; stage ``i`` (0-based) uses ``rate * i / 3``
            in all its blocks. Official default 0 (ImageNet training: 0.1 / 0.3 / 0.5 for T / S / B).
        norm_cfg: the BatchNorms, built with mmcv's ``build_norm_layer``; default
            ``dict(type='BN', requires_grad=True)``, ``dict(type='SyncBN')`` for multi-GPU training
            (plain BN on a machine without CUDA, see `vt_backbones.compat`).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    }
    block_kinds = 2  # plain and shuffled windows
    variants = {'shuffle_t': 'tiny', 'shuffle_s': 'small', 'shuffle_b': 'base'}
    # No official dense configs: Swin's recipes (the stem's BatchNorms are to_token.conv{1,2}.1).
    recipes = swin_recipes(no_decay=(*SWIN_NO_DECAY, 'to_token.conv1.1', 'to_token.conv2.1'))

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, window_size: int = 7,
                 mlp_ratio: float = 4.0, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_cfg: dict | None = None, out_indices: Sequence[int] = ALL_STAGES,
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        norm_cfg = dict(type='BN', requires_grad=True) if norm_cfg is None else norm_cfg
        if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
            raise ValueError(f"norm_cfg must be a dict with a 'type' (e.g. dict(type='SyncBN')), got {norm_cfg!r}")
        if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
            raise ValueError(f'window_size must be an odd positive int (the neighbour-window conv keeps the '
                             f'map size only for odd kernels), got {window_size!r}')
        embed_dims, depths, num_heads = self.arch['embed_dims'], self.arch['depths'], self.arch['num_heads']
        if len(depths) != NUM_STAGES or any(d < 2 or d % 2 for d in depths):
            raise ValueError(f"arch['depths'] must be {NUM_STAGES} even positive ints (blocks come in pairs), "
                             f'got {depths!r}')
        self.num_features = stage_channels(embed_dims)
        if len(num_heads) != NUM_STAGES or any(c % h for c, h in zip(self.num_features, num_heads)):
            raise ValueError(f"arch['num_heads'] must be {NUM_STAGES} ints dividing the stage channels "
                             f'{self.num_features}, got {num_heads!r}')
        settings = BlockSettings(mlp_ratio=mlp_ratio, qkv_bias=False, drop=drop_rate)  # official: no qkv bias
        self.to_token = ConvStem(in_channels, embed_dims, norm_cfg)
        for i in range(NUM_STAGES):
            self.add_module(f'stage{i + 1}', ShuffleStage(
                in_dim=self.num_features[max(i - 1, 0)], dim=self.num_features[i], depth=depths[i],
                num_heads=num_heads[i], window_size=window_size, settings=settings, norm_cfg=norm_cfg,
                drop_path=drop_path_rate * i / (NUM_STAGES - 1)))

    def stage(self, index: int) -> ShuffleStage:
        """Stage ``index`` (0-based; the official ``stage{index + 1}``)."""
        return getattr(self, f'stage{index + 1}')

    def reset_parameters(self) -> None:
        """The official initialisation: truncated normal (std 0.02) convs and bias tables, zero biases,
        unit norms."""
        super().reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, ShuffleAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    @property
    def stem(self) -> nn.Module:
        return self.to_token

    def stage_parts(self, index: int) -> list[nn.Module]:
        return [self.stage(index)]  # its patch merging included

    def forward_stage(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if index == 0:
            x = self.to_token(x)
        x = self.stage(index)(x, self.run_block)
        return x, x  # NCHW throughout


# ---- weight conversion --------------------------------------------------------------------------
# Our keys are the official ones; only what a backbone does not use goes.
_DROP = {
    r'head\..*': 'classification head',
    r'.*relative_position_index': 'index buffer, rebuilt',
}


def _from_official(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    return drop(sd, _DROP)


def _guess_variant(sd: Mapping[str, Tensor]) -> str | None:
    try:
        arch = (sd['to_token.conv2.0.weight'].shape[0],
                2 * len({m[1] for k in sd if (m := re.match(r'stage3\.layers\.(\d+)\.', k))}),
                sd['stage1.layers.0.0.attn.relative_position_bias_table'].shape[1])
    except KeyError:
        return None
    return ShuffleTransformer.variant_where(lambda s: (s['embed_dims'], s['depths'][2], s['num_heads'][0]), arch)


register_converter(FamilyConverter(
    family='ShuffleTransformer',
    formats=[
        SourceFormat('official', lambda sd: 'to_token.conv1.0.weight' in sd
                     and 'stage1.layers.0.0.attn.to_qkv.weight' in sd, _from_official),
    ],
    guess_variant=_guess_variant,
    resizable=resize_relative_position_table,
))

"""Swin Transformer (Liu et al., ICCV 2021) as a dense-prediction backbone.

Follows the official detection backbone: shifted windows with the official region mask, padding of
every stage to a window multiple, the shift kept at stage 4 even when the map is no larger than the
window, and one LayerNorm per output. Deviation: padded tokens are masked out of the attention, so
padding never changes the outputs of real tokens (the official code lets them attend to zeros).
Only the attention sees padding: the projections and the MLP run on the real tokens.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..base import StagedBackbone
from ..convert import (FamilyConverter, SourceFormat, StateDict, drop, register_converter, rename,
                       resize_relative_position_table)
from ..layers import (DropPath, Mlp, PatchEmbed, WindowGrid, drop_path_rates, pad_to_multiple,
                      relative_position_bias, window_attention, window_grid)
from ..registry import MODELS


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias.

    The projections ``qkv`` and ``proj`` are applied by `SwinBlock` on the real tokens only; this
    module attends within windows: ``[B * nW, N, 3C]`` (+ a ``[nW, N, N]`` mask) -> ``[B * nW, N, C]``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = (window_size, window_size)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)

    def forward(self, qkv: Tensor, mask: Tensor | None) -> Tensor:
        bias = relative_position_bias(self.relative_position_bias_table, self.window)
        return window_attention(qkv, self.num_heads, bias, mask, self.attn_drop, self.training)


class SwinBlock(nn.Module):
    """Pre-norm block: (shifted) window attention, then MLP. ``[B, H, W, C]`` -> same shape.

    Only the attention itself sees the padded, shifted windows (`WindowGrid`); the projections and
    the MLP run on the real tokens.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop: float, attn_drop: float, drop_path: float) -> None:
        super().__init__()
        self.window = (window_size, window_size)
        self.shift = (shift_size, shift_size)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop)
        self.drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        # One expression, so the window tensors are freed before the MLP runs.
        x = x + self.drop_path(self.drop(self.attn.proj(
            grid.reverse(self.attn(grid.partition(self.attn.qkv(self.norm1(x))), grid.mask)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Concatenates each 2x2 neighbourhood, LayerNorm, linear 4C -> 2C. ``[B, H, W, C]`` -> ``[B, ceil(H/2), ceil(W/2), 2C]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[1:3]
        x = pad_to_multiple(x, 2, channels_last=True)
        # Official channel order: offsets (0,0), (1,0), (0,1), (1,1) as (row, column).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks alternating regular and shifted windows, then the patch merging that feeds the next stage.

    The two window grids (regular, shifted: gather indices and masks) are cached per map shape.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop: float, attn_drop: float, drop_paths: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio,
                      qkv_bias, drop, attn_drop, drop_paths[i]) for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, run_block: Callable[..., Tensor]) -> Tensor:
        _, H, W, _ = x.shape
        grids = [window_grid(H, W, block.window, block.shift, x.device) for block in self.blocks[:2]]
        for i, block in enumerate(self.blocks):
            x = run_block(block, x, grids[i % 2])
        return x


@MODELS.register_module()
class SwinTransformer(StagedBackbone):
    """Swin Transformer backbone.

    Args:
        arch: ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` or a dict with ``embed_dims``,
            ``depths`` and ``num_heads``.
        window_size: 7 for the 224 checkpoints, 12 for the 384 ones (converted tables are resized).
        drop_path_rate: stochastic depth, linear over all blocks (official dense default 0.2).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
        'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    }
    variants = {'swin_t': 'tiny', 'swin_s': 'small', 'swin_b': 'base', 'swin_l': 'large'}

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, drop_path_rate,
                         init_cfg, pretrained=pretrained, compile_blocks=compile_blocks)
        if window_size < 2:
            raise ValueError(f'window_size must be >= 2, got {window_size!r}')
        build_swin_layout(self, in_channels, drop_rate, lambda i, dim, depth, heads, drop_paths: SwinStage(
            dim, depth, heads, window_size, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_paths,
            downsample=i < 3))


def build_swin_layout(model: StagedBackbone, in_channels: int, drop_rate: float,
                      make_stage: Callable[[int, int, int, int, Sequence[float]], nn.Module]) -> None:
    """Swin's macro design on ``model`` (shared with GG-Transformer): a 4x4 patch embedding, the four stages
    ``make_stage(index, dim, depth, heads, drop_paths)`` with channels doubling, one LayerNorm per output,
    Swin's initialisation (truncated normal linears and bias tables), then the frozen stages frozen."""
    embed_dims, depths, num_heads = model.arch['embed_dims'], model.arch['depths'], model.arch['num_heads']
    model.num_features = tuple(embed_dims * 2 ** i for i in range(4))
    model.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size=4)
    model.pos_drop = nn.Dropout(drop_rate)
    drop_paths = drop_path_rates(depths, model.drop_path_rate)
    model.layers = nn.ModuleList([make_stage(i, model.num_features[i], depths[i], num_heads[i], drop_paths[i])
                                  for i in range(4)])
    for i in model.out_indices:
        model.add_module(f'norm{i}', nn.LayerNorm(model.num_features[i]))
    model.reset_parameters()
    for stage in model.layers:
        for block in stage.blocks:
            if block.attn.relative_position_bias_table is not None:  # GG's Glance has none by default
                nn.init.trunc_normal_(block.attn.relative_position_bias_table, std=0.02)
    model.freeze_stages()


# ---- weight conversion --------------------------------------------------------------------------
_DROP = {
    r'head\..*': 'classification head',
    r'norm\.(weight|bias)': 'final classification norm',
    r'.*relative_position_index': 'index buffer, rebuilt',
    r'.*attn_mask': 'attention mask, rebuilt per input size',
}


def _unfold_to_concat_order(channels: int) -> Tensor:
    """Permutation from OpenMMLab's ``nn.Unfold`` merging order (channel-major, then row, column offset)
    to the official concatenation order (offset-major: (0,0), (1,0), (0,1), (1,1))."""
    c = channels // 4
    return torch.tensor([ch * 4 + (pos % 2) * 2 + pos // 2 for pos in range(4) for ch in range(c)])


def _from_official(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    return drop(sd, _DROP)


def _from_timm(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    # timm keeps the merging at the start of the next stage.
    sd = rename(sd, [(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m[1]) - 1}.downsample.')])
    return drop(sd, _DROP)


def _from_openmmlab(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    sd = rename(sd, [(r'^patch_embed\.projection\.', 'patch_embed.proj.'), (r'^stages\.', 'layers.'),
                     (r'\.attn\.w_msa\.', '.attn.'), (r'\.ffn\.layers\.0\.0\.', '.mlp.fc1.'),
                     (r'\.ffn\.layers\.1\.', '.mlp.fc2.')])
    for key in [k for k in sd if re.fullmatch(r'layers\.\d\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)', k)]:
        order = _unfold_to_concat_order(sd[key].shape[-1])
        sd[key] = sd[key][..., order].contiguous()
    return drop(sd, _DROP)


def _guess_variant(sd: Mapping[str, Tensor]) -> str | None:
    try:
        arch = dict(embed_dims=sd['patch_embed.proj.weight'].shape[0],
                    depth3=sum(1 for k in sd if re.fullmatch(r'layers\.2\.blocks\.\d+\.norm1\.weight', k)),
                    heads=sd['layers.0.blocks.0.attn.relative_position_bias_table'].shape[1])
    except KeyError:
        return None
    return SwinTransformer.variant_where(lambda s: (s['embed_dims'], s['depths'][2], s['num_heads'][0]),
                                         tuple(arch.values()))


register_converter(FamilyConverter(
    family='SwinTransformer',
    formats=[
        SourceFormat('official', lambda sd: 'patch_embed.proj.weight' in sd and 'layers.0.downsample.reduction.weight' in sd,
                     _from_official),
        SourceFormat('timm', lambda sd: 'patch_embed.proj.weight' in sd and 'layers.1.downsample.reduction.weight' in sd
                     and 'layers.0.downsample.reduction.weight' not in sd,
                     _from_timm),
        SourceFormat('openmmlab', lambda sd: 'patch_embed.projection.weight' in sd
                     and 'stages.0.blocks.0.attn.w_msa.qkv.weight' in sd, _from_openmmlab),
    ],
    guess_variant=_guess_variant,
    resizable=resize_relative_position_table,
    new_keys=(r'norm[0-3]\.(weight|bias)',),
))

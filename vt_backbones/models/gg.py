"""GG-Transformer (Glance-and-Gaze Transformer; Yu et al., NeurIPS 2021, arXiv 2106.02277) as a dense backbone.

A re-implementation from the paper: the authors never released code, configs or weights (their repository
holds only a README), so nothing here is checked against an official implementation.

Macro design as Swin-T / Swin-S, which the paper builds on (patch 4, C = 96, depths 2-2-6-2 / 2-2-18-2,
heads 3-6-12-24, MLP ratio 4, pre-norm LayerNorm blocks, Swin's patch merging, one LayerNorm per output),
with every block's window attention replaced by GG-MSA:

* Glance: multi-head self-attention inside ``M x M`` partitions (``M = 7``) made by adaptively-dilated
  splitting: partition ``(i, j)`` holds the tokens at rows ``i, i + H/M, ...`` and columns
  ``j, j + W/M, ...``, so every partition spans the whole map while the cost stays linear in ``H * W``.
  There is no shifted variant: all blocks are alike.
* Gaze: the values of the partitions are merged back to the ``H x W`` layout (the inverse of the dilated
  splitting), a depth-wise convolution runs over them, its output is split again and added to the Glance
  output, and the sum is merged before the output projection:
  ``proj(Merge(softmax(q k^T / sqrt(d)) v + Split(DWConv(Merge(v)))))``.
  Both branches cover all heads and all channels (no split of heads between them).
* No position encoding, as the paper: the Gaze convolution supplies position information implicitly.
  ``glance_pos_bias=True`` adds Swin's learned relative position bias ``B`` to the Glance logits
  (``softmax(q k^T / sqrt(d) + B)``, a ``(2M-1)^2 x heads`` table per block): our addition, not the paper's
  (a dilated partition is a regular ``M x M`` lattice, so the relative offsets of its tokens, in units of
  the dilation, are Swin's).

Checked against the paper: only its abstract and Figure 2's caption were retrievable (two parallel
branches; Glance = self-attention on adaptively-dilated partitions, linear cost, global receptive field;
Gaze = one depth-wise convolution adding local context). Sec. 3 and the result tables were not; the
project's design description of GG fixes two more facts (no position encoding; the Gaze branch's merge,
depth-wise conv, split and addition to the attention output). The choices below are our reading, not
re-checked against the paper's text:

* Gaze kernel 3x3 (``gaze_kernel_size``), with bias: the Gaze branch is described as a simple depth-wise
  convolution compensating the local context that the dilated partitions lack, and with a dilation of
  ``H/M`` the tokens a Glance partition misses first are a token's immediate neighbours, which a 3x3
  kernel covers.
* Output norms norm0..norm3 and ``drop_path_rate`` 0.2 as our Swin (Swin's dense defaults).

Sizes: the map is padded at the bottom/right to a multiple of ``M`` (``Hp x Wp``), the dilation is
``(Hp / M, Wp / M)`` and padded tokens are masked out of the attention (at 224 no stage needs padding;
stage 4's 7x7 map is one partition, i.e. global attention). Only the attention sees padding: the
projections, the MLP and the Gaze convolution run on the real map, so the convolution's zero padding
is its own and padded tokens never change real outputs.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..base import ALL_STAGES, StagedBackbone, stage_channels
from ..engine.recipes import SWIN_NO_DECAY, swin_recipes
from ..convert import FamilyConverter, OurLayout, register_converter, resize_relative_position_table
from ..layers import (BlockSettings, PatchEmbed, PatchMerging, PreNormBlock, WindowGrid,
                      relative_position_bias, spanning_window_grid, window_attention)
from ..registry import MODELS


class GlanceGazeAttention(nn.Module):
    """GG-MSA: ``[B, H, W, C]`` (+ the stage's dilated `WindowGrid`) -> same shape.

    ``qkv`` and ``proj`` run on the real tokens; `glance` is the Glance branch on the dilated partitions, `gaze`
    the Gaze branch on the values of the real map. ``pos_bias`` adds Swin's learned relative position bias (a
    ``(2M-1)^2 x heads`` table) to the Glance logits: our addition, off by default (the paper has no position
    encoding; the Gaze conv supplies it).
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, gaze_kernel_size: int, pos_bias: bool,
                 qkv_bias: bool = True, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window = (window_size, window_size)
        table = torch.zeros((2 * window_size - 1) ** 2, num_heads) if pos_bias else None
        self.relative_position_bias_table = None if table is None else nn.Parameter(table)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.gaze_conv = nn.Conv2d(dim, dim, gaze_kernel_size, padding=gaze_kernel_size // 2, groups=dim)

    def glance(self, qkv: Tensor, mask: Tensor | None) -> Tensor:
        """Attention inside each partition: ``[B * nW, N, 3C]`` (+ a ``[nW, N, N]`` padding mask) -> ``[B * nW, N, C]``."""
        bias = None if self.relative_position_bias_table is None else relative_position_bias(
            self.relative_position_bias_table, self.window)
        return window_attention(qkv, self.num_heads, bias, mask, self.attn_drop, self.training)

    def gaze(self, v: Tensor) -> Tensor:
        """Depth-wise conv over the values, ``[B, H, W, C]`` -> same shape (zero padding at the borders)."""
        return self.gaze_conv(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        qkv = self.qkv(x)
        # The Gaze branch merges the partitioned values back to the map (the inverse of the dilated splitting),
        # convolves them, splits the result again and adds it to the Glance output, which is then merged. Merging
        # the split values gives the values themselves (the padding is zeros, as the conv's own), so the conv runs
        # on the values before the split and its output is added after the merge: the same sum, with no extra
        # gathers. Values' channels are ordered (head, head dim), as the merged Glance output. Gaze first, so
        # that qkv is freed once partitioned and the Glance output is added in place (lower peak memory).
        mixed = self.gaze(qkv[..., 2 * x.shape[-1]:])
        windows = grid.partition(qkv)
        del qkv
        mixed += grid.reverse(self.glance(windows, grid.mask))
        del windows
        return self.proj(mixed)


class GGBlock(PreNormBlock):
    """Pre-norm block: GG-MSA, then MLP. ``[B, H, W, C]`` -> same shape."""

    def __init__(self, dim: int, num_heads: int, window_size: int, gaze_kernel_size: int, glance_pos_bias: bool,
                 settings: BlockSettings, drop_path: float) -> None:
        super().__init__(dim=dim, attn=GlanceGazeAttention(
            dim=dim, num_heads=num_heads, window_size=window_size, gaze_kernel_size=gaze_kernel_size,
            pos_bias=glance_pos_bias, qkv_bias=settings.qkv_bias, attn_drop=settings.attn_drop),
            settings=settings, drop_path=drop_path)


class GGStage(nn.Module):
    """GG blocks on one map size, then the patch merging that feeds the next stage.

    All blocks share one dilated partition of the map (gather indices and padding mask, cached per shape).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, gaze_kernel_size: int,
                 glance_pos_bias: bool, settings: BlockSettings, drop_paths: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.window = (window_size, window_size)
        self.blocks = nn.ModuleList([
            GGBlock(dim=dim, num_heads=num_heads, window_size=window_size, gaze_kernel_size=gaze_kernel_size,
                    glance_pos_bias=glance_pos_bias, settings=settings, drop_path=drop_paths[i])
            for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, run_block: Callable[..., Tensor]) -> Tensor:
        # Adaptively-dilated splitting: M x M partitions whose stride makes them span the (padded) map.
        grid = spanning_window_grid(x.shape[1], x.shape[2], self.window, x.device)
        for block in self.blocks:
            x = run_block(block, x, grid)
        return x


@MODELS.register_module()
class GGTransformer(StagedBackbone):
    """Glance-and-Gaze Transformer backbone (re-implemented from the paper, see the module docstring).

    Args:
        arch: ``'tiny'``, ``'small'`` or a dict with ``embed_dims``, ``depths`` and ``num_heads``.
        window_size: ``M``, the side of the Glance partitions (the paper's 7).
        gaze_kernel_size: odd kernel size of the Gaze depth-wise convolution (3).
        glance_pos_bias: add Swin's learned relative position bias to the Glance attention. Our addition, off
            by default: the paper uses no position encoding (the Gaze convolution supplies position information).
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate: see `BlockSettings`.
        drop_path_rate: stochastic depth, linear over all blocks (0.2 as Swin's dense default).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    }
    variants = {'gg_t': 'tiny', 'gg_s': 'small'}
    # No config was ever published: Swin's recipes, as the paper follows Swin's settings.
    recipes = swin_recipes(no_decay=SWIN_NO_DECAY)

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, window_size: int = 7,
                 gaze_kernel_size: int = 3, glance_pos_bias: bool = False, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        if not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f'window_size must be an int >= 2, got {window_size!r}')
        if not isinstance(gaze_kernel_size, int) or gaze_kernel_size < 1 or gaze_kernel_size % 2 == 0:
            raise ValueError(f'gaze_kernel_size must be an odd int >= 1, got {gaze_kernel_size!r}')
        if not isinstance(glance_pos_bias, bool):
            raise ValueError(f'glance_pos_bias must be a bool, got {glance_pos_bias!r}')
        # Swin's macro design (module docstring), with GG blocks.
        settings = BlockSettings(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate)
        self.num_features = stage_channels(self.arch['embed_dims'])
        self.patch_embed = PatchEmbed(in_channels, self.num_features[0], patch_size=4)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList([
            GGStage(**stage, window_size=window_size, gaze_kernel_size=gaze_kernel_size,
                    glance_pos_bias=glance_pos_bias, settings=settings)
            for stage in self.stage_arguments(drop_path_rate)])
        self.add_output_norms()

    def reset_parameters(self) -> None:
        """Swin's: truncated normal (std 0.02) linears and Glance bias tables (if any); PyTorch's default for the
        Gaze convolutions."""
        super().reset_parameters()
        for block in self.blocks():
            if block.attn.relative_position_bias_table is not None:
                nn.init.trunc_normal_(block.attn.relative_position_bias_table, std=0.02)


# ---- weight conversion --------------------------------------------------------------------------
# No official checkpoint exists: the only layout is ours (e.g. an ImageNet GG-T trained with this backbone
# inside an mmpretrain classifier; the framework strips ``module.`` and keeps ``backbone.*``).
def _guess_variant(sd: Mapping[str, Tensor]) -> str | None:
    try:
        embed_dims = sd['patch_embed.proj.weight'].shape[0]
    except KeyError:
        return None
    depth3 = sum(1 for k in sd if re.fullmatch(r'layers\.2\.blocks\.\d+\.norm1\.weight', k))
    return GGTransformer.variant_where(lambda s: (s['embed_dims'], s['depths'][2]), (embed_dims, depth3))


def _has_glance_pos_bias(sd: Mapping[str, Tensor]) -> bool:
    return any(key.endswith('.attn.relative_position_bias_table') for key in sd)


register_converter(FamilyConverter(
    family='GGTransformer',
    formats=[],  # only ours
    # Saved from a model built with the Glance position bias: it loads into one built the same way.
    our_layouts=(OurLayout(dict(glance_pos_bias=True), _has_glance_pos_bias),),
    guess_variant=_guess_variant,
    resizable=resize_relative_position_table,
    # A checkpoint may hold only some output norms (a classifier keeps norm3 at most).
    new_keys=(r'norm[0-3]\.(weight|bias)',),
))

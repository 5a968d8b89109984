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
* Gaze: a depth-wise convolution over the values arranged back on the ``H x W`` grid, added to the
  merged Glance output before the output projection:
  ``proj(Merge(softmax(q k^T / sqrt(d) + B) v) + DWConv(Merge(v)))``.
  Both branches cover all heads and all channels (no split of heads between them).

Checked against the paper: only its abstract and Figure 2's caption were retrievable (two parallel
branches; Glance = self-attention on adaptively-dilated partitions, linear cost, global receptive field;
Gaze = one depth-wise convolution adding local context). Sec. 3 and the result tables were not, so the
formula above and the choices below are our reading, not re-checked against the paper's text:

* Gaze kernel 3x3 (``gaze_kernel_size``), with bias: the Gaze branch is described as a simple depth-wise
  convolution compensating the local context that the dilated partitions lack, and with a dilation of
  ``H/M`` the tokens a Glance partition misses first are a token's immediate neighbours, which a 3x3
  kernel covers.
* The Glance attention keeps Swin's learned relative position bias (a ``(2M-1)^2 x heads`` table): a
  dilated partition is a regular ``M x M`` lattice, so the relative offsets of its tokens (in units of
  the dilation) are Swin's, and GG-T is Swin-T with only the attention replaced.
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

from torch import Tensor, nn

from ..base import StagedBackbone
from ..convert import FamilyConverter, SourceFormat, StateDict, register_converter, resize_relative_position_table
from ..layers import DropPath, Mlp, WindowGrid, spanning_window_grid
from ..registry import MODELS
from .swin import PatchMerging, WindowAttention, build_swin_layout


class GlanceGazeAttention(WindowAttention):
    """GG-MSA's two branches; ``qkv`` and ``proj`` are applied by `GGBlock` on the real tokens.

    ``forward`` (Swin's window attention) is the Glance branch on the dilated partitions; `gaze` is the
    Gaze branch on the values of the real map.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, gaze_kernel_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0) -> None:
        super().__init__(dim, num_heads, window_size, qkv_bias, attn_drop)
        self.gaze_conv = nn.Conv2d(dim, dim, gaze_kernel_size, padding=gaze_kernel_size // 2, groups=dim)

    def gaze(self, v: Tensor) -> Tensor:
        """Depth-wise conv over the values, ``[B, H, W, C]`` -> same shape (zero padding at the borders)."""
        return self.gaze_conv(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class GGBlock(nn.Module):
    """Pre-norm block: GG-MSA, then MLP. ``[B, H, W, C]`` -> same shape."""

    def __init__(self, dim: int, num_heads: int, window_size: int, gaze_kernel_size: int, mlp_ratio: float,
                 qkv_bias: bool, drop: float, attn_drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GlanceGazeAttention(dim, num_heads, window_size, gaze_kernel_size, qkv_bias, attn_drop)
        self.drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        qkv = self.attn.qkv(self.norm1(x))
        # Values' channels are ordered (head, head dim), as the merged Glance output. Gaze first, so that
        # qkv is freed once partitioned and the Glance output is added in place (lower peak memory).
        mixed = self.attn.gaze(qkv[..., 2 * x.shape[-1]:])
        windows = grid.partition(qkv)
        del qkv
        mixed += grid.reverse(self.attn(windows, grid.mask))
        del windows
        x = x + self.drop_path(self.drop(self.attn.proj(mixed)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class GGStage(nn.Module):
    """GG blocks on one map size, then the patch merging that feeds the next stage.

    All blocks share one dilated partition of the map (gather indices and padding mask, cached per shape).
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, gaze_kernel_size: int,
                 mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float, drop_paths: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.window = (window_size, window_size)
        self.blocks = nn.ModuleList([
            GGBlock(dim, num_heads, window_size, gaze_kernel_size, mlp_ratio, qkv_bias, drop, attn_drop,
                    drop_paths[i]) for i in range(depth)])
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
        drop_path_rate: stochastic depth, linear over all blocks (0.2 as Swin's dense default).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    }
    variants = {'gg_t': 'tiny', 'gg_s': 'small'}

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, window_size: int = 7,
                 gaze_kernel_size: int = 3, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None) -> None:
        super().__init__(arch, in_channels, out_indices, frozen_stages, norm_eval, with_cp, drop_path_rate,
                         init_cfg, pretrained=pretrained)
        if not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f'window_size must be an int >= 2, got {window_size!r}')
        if not isinstance(gaze_kernel_size, int) or gaze_kernel_size < 1 or gaze_kernel_size % 2 == 0:
            raise ValueError(f'gaze_kernel_size must be an odd int >= 1, got {gaze_kernel_size!r}')
        build_swin_layout(self, in_channels, drop_rate, lambda i, dim, depth, heads, drop_paths: GGStage(
            dim, depth, heads, window_size, gaze_kernel_size, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
            drop_paths, downsample=i < 3))


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


def _ours(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    return dict(sd), {}


register_converter(FamilyConverter(
    family='GGTransformer',
    formats=[SourceFormat('vt_backbones', lambda sd: 'layers.0.blocks.0.attn.gaze_conv.weight' in sd, _ours)],
    guess_variant=_guess_variant,
    resizable=resize_relative_position_table,
    # A checkpoint may hold only some output norms (a classifier keeps norm3 at most).
    new_keys=(r'norm[0-3]\.(weight|bias)',),
))

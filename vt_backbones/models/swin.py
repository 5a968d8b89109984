"""Swin Transformer (Liu et al., ICCV 2021) as a dense-prediction backbone.

Follows the official detection backbone: shifted windows with the official region mask, padding of
every stage to a window multiple, the shift kept at stage 4 even when the map is no larger than the
window, and one LayerNorm per output. Deviation: padded tokens are masked out of the attention, so
padding never changes the outputs of real tokens (the official code lets them attend to zeros).
Only the attention sees padding: the projections and the MLP run on the real tokens.
"""
from __future__ import annotations

import importlib
import math
import re
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..base import ALL_STAGES, StagedBackbone, stage_channels
from ..engine.recipes import SWIN_NO_DECAY, swin_recipes
from ..convert import (FamilyConverter, SourceFormat, StateDict, drop, register_converter, rename,
                       resize_relative_position_table)
from ..layers import (BlockSettings, PatchEmbed, PatchMerging, PreNormBlock, WindowGrid,
                      relative_position_bias, window_attention, window_grid)
from ..registry import MODELS


class WindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows with a learned relative position bias.

    ``[B, H, W, C]`` (+ the stage's `WindowGrid`) -> same shape. The projections ``qkv`` and ``proj`` run on the
    real tokens; only the attention itself sees the padded, shifted windows.
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

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        bias = relative_position_bias(self.relative_position_bias_table, self.window)
        windows = window_attention(grid.partition(self.qkv(x)), self.num_heads, bias, grid.mask, self.attn_drop,
                                   self.training)
        return self.proj(grid.reverse(windows))


class SwinBlock(PreNormBlock):
    """Pre-norm block: (shifted) window attention, then MLP. ``[B, H, W, C]`` -> same shape."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, settings: BlockSettings,
                 drop_path: float) -> None:
        super().__init__(dim=dim, attn=WindowAttention(dim=dim, num_heads=num_heads, window_size=window_size,
                                                       qkv_bias=settings.qkv_bias, attn_drop=settings.attn_drop),
                         settings=settings, drop_path=drop_path)
        self.window = (window_size, window_size)
        self.shift = (shift_size, shift_size)


class SwinStage(nn.Module):
    """Blocks alternating regular and shifted windows, then the patch merging that feeds the next stage.

    The two window grids (regular, shifted: gather indices and masks) are cached per map shape.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, settings: BlockSettings,
                 drop_paths: Sequence[float], downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinBlock(dim=dim, num_heads=num_heads, window_size=window_size,
                      shift_size=0 if i % 2 == 0 else window_size // 2, settings=settings, drop_path=drop_paths[i])
            for i in range(depth)])
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
        mlp_ratio, qkv_bias, drop_rate, attn_drop_rate: see `BlockSettings`.
        drop_path_rate: stochastic depth, linear over all blocks (official dense default 0.2).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
        'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
        'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
        'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    }
    block_kinds = 2  # regular and shifted windows
    variants = {'swin_t': 'tiny', 'swin_s': 'small', 'swin_b': 'base', 'swin_l': 'large'}
    # SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_*_adamw_*x_coco.py and
    # Swin-Transformer-Semantic-Segmentation configs/swin/upernet_swin_*_512x512_160k_ade20k.py.
    recipes = swin_recipes(no_decay=('absolute_pos_embed', *SWIN_NO_DECAY))

    def __init__(self, arch: str | dict = 'tiny', in_channels: int = 3, window_size: int = 7,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        if window_size < 2:
            raise ValueError(f'window_size must be >= 2, got {window_size!r}')
        settings = BlockSettings(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate)
        self.num_features = stage_channels(self.arch['embed_dims'])
        self.patch_embed = PatchEmbed(in_channels, self.num_features[0], patch_size=4)
        self.pos_drop = nn.Dropout(drop_rate)
        self.layers = nn.ModuleList([SwinStage(**stage, window_size=window_size, settings=settings)
                                     for stage in self.stage_arguments(drop_path_rate)])
        self.add_output_norms()

    def reset_parameters(self) -> None:
        """Swin's: truncated normal (std 0.02) linears and bias tables."""
        super().reset_parameters()
        for block in self.blocks():
            nn.init.trunc_normal_(block.attn.relative_position_bias_table, std=0.02)


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


# ---- reference implementations (tools/benchmark.py --reference) ---------------------------------------
class FeaturesAsNCHW(nn.Module):
    """Wraps a feature extractor into the NCHW tuple contract, converting channels-last maps (as
    ours are contiguous NCHW, so that both do the same work)."""

    def __init__(self, inner: nn.Module, channels: Sequence[int], fmt: str | None) -> None:
        super().__init__()
        self.inner = inner
        self.channels = tuple(channels)
        self.fmt = fmt  # 'NCHW' / 'NHWC' when the extractor says, else decided from the shapes

    def _is_nhwc(self, f: Tensor, channels: int) -> bool:
        if self.fmt is not None:
            return self.fmt == 'NHWC'
        return f.shape[-1] == channels and f.shape[1] != channels

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(f.permute(0, 3, 1, 2).contiguous() if self._is_nhwc(f, c) else f
                     for f, c in zip(self.inner(x), self.channels))


def _swin_config(ours: nn.Module) -> dict[str, Any]:
    """The hyper-parameters of one of our SwinTransformer instances, read from ``arch`` and from the
    parameters under their checkpoint names (stable, the weight converter relies on them), not from
    module internals."""
    params = dict(ours.named_parameters())
    block = 'layers.0.blocks.0.'
    table_rows = params[block + 'attn.relative_position_bias_table'].shape[0]  # (2 * window - 1) ** 2
    window = (math.isqrt(table_rows) + 1) // 2
    fc1 = params[block + 'mlp.fc1.weight']  # [hidden, dim]
    return dict(embed_dims=ours.arch['embed_dims'], depths=tuple(ours.arch['depths']),
                num_heads=tuple(ours.arch['num_heads']), window_size=window,
                mlp_ratio=fc1.shape[0] / fc1.shape[1], qkv_bias=block + 'attn.qkv.bias' in params,
                out_indices=tuple(ours.out_indices))


def _openmmlab_swin(module: str) -> Callable[[str, nn.Module, Any], nn.Module]:
    """mmdet's / mmseg's ``SwinTransformer`` (the same code in both) with our model's configuration."""

    def build(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
        cls = importlib.import_module(module).SwinTransformer
        cfg = _swin_config(ours)
        mlp_ratio = cfg.pop('mlp_ratio')
        return cls(**cfg, mlp_ratio=int(mlp_ratio) if float(mlp_ratio).is_integer() else mlp_ratio,
                   drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=opts.drop_path_rate,
                   with_cp=opts.with_cp, init_cfg=None)

    return build


_TIMM_SWIN = {'swin_t': 'swin_tiny_patch4_window7_224', 'swin_s': 'swin_small_patch4_window7_224',
              'swin_b': 'swin_base_patch4_window7_224', 'swin_l': 'swin_large_patch4_window7_224'}


def _timm_swin(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
    import timm
    if variant not in _TIMM_SWIN:
        raise KeyError(f'no timm model mapped for {variant!r} (known: {sorted(_TIMM_SWIN)})')
    model = timm.create_model(_TIMM_SWIN[variant], pretrained=False, features_only=True,
                              out_indices=tuple(ours.out_indices), img_size=opts.size,
                              drop_path_rate=opts.drop_path_rate)
    if opts.with_cp:
        model.set_grad_checkpointing(True)
    fmt = getattr(model, 'output_fmt', None)  # timm >= 0.9 feature wrappers; Swin's are often NHWC
    fmt = str(getattr(fmt, 'value', fmt)) if fmt is not None else None
    return FeaturesAsNCHW(model, model.feature_info.channels(), fmt if fmt in ('NCHW', 'NHWC') else None)


SwinTransformer.reference_builders = {'mmdet': _openmmlab_swin('mmdet.models.backbones'),
                                      'mmseg': _openmmlab_swin('mmseg.models.backbones'), 'timm': _timm_swin}

"""Twins (Chu et al., NeurIPS 2021): Twins-PCPVT and Twins-SVT as dense-prediction backbones.

Both follow the official dense-prediction code (Meituan-AutoML/Twins ``detection/gvt.py``: ``pcpvt_*``
and ``alt_gvt_*``): four stages, each a non-overlapping conv patch embedding (kernel = stride = 4, then 2)
with a LayerNorm, then pre-norm transformer blocks, with the position-encoding generator (PEG: a
depth-wise 3x3 conv plus identity) after the first block of every stage.

* PCPVT: every block uses global sub-sampled attention (GSA): queries from every token, keys and values
  from a conv of kernel = stride = ``sr_ratio`` (8, 4, 2, 1) plus LayerNorm. No output norms.
* SVT: blocks alternate locally-grouped self-attention (LSA, 7x7 windows; even blocks) and GSA (odd
  blocks); one LayerNorm per stage output which, as in the official dense code, also feeds the next
  stage (so all four exist whatever ``out_indices``; the ImageNet checkpoints have none of them).

Layer norms as the official code: ``eps=1e-6`` in the blocks and the SVT output norms, ``1e-5`` in the
patch embeddings and after the sub-sampling conv.

Deviations from the official dense code (none of them changes the outputs at 224x224, nor at any input
whose sides are multiples of 32 except the LSA masking, see the first item):

* LSA pads every stage to a window multiple and masks the padded tokens out of the attention, so padding
  never changes the outputs of real tokens; the official code attends to the zero-padded tokens
  (mmseg's port masks them, but its mask is void unless both bottom and right padding are needed).
* Any ``H, W >= 32``: the patch embeddings pad to a patch multiple (stage sizes ``ceil(H / stride)``;
  the official code floors and drops the remainder). The GSA sub-sampling conv pads its input with zeros
  at the bottom/right to a multiple of ``sr_ratio``, like any strided conv at a border: each key is then
  the conv of the real tokens of its window (the padded entries are zeros and add nothing), so every
  real token is seen by a key and nothing but real tokens reaches a key. The official conv floors,
  leaving the last ``H mod sr_ratio`` rows / ``W mod sr_ratio`` columns out of every key; both are
  identical whenever the stage map is a multiple of ``sr_ratio``, i.e. for inputs with sides that are
  multiples of 32 (224, and everything mmdet and mmseg feed with ``pad_size_divisor=32`` / 512 crops).
* ``drop_path_rate`` takes effect; the official dense wrappers (``pcpvt_small(**kwargs)`` etc.) ignore
  every argument and always build with drop path 0.2 (our default).
* Only the attention sees padding: the projections, the MLP and the PEG run on the real tokens.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any, Mapping, Sequence

from torch import Tensor, nn

from ..base import ALL_STAGES, NUM_STAGES, VisionBackbone
from ..engine.recipes import Recipe
from ..convert import FamilyConverter, SourceFormat, StateDict, drop, register_converter, rename
from ..layers import (BlockSettings, ConvPositionEncoding, PatchEmbed, PreNormBlock, WindowGrid, attention,
                      bhwc_to_nchw, drop_path_rates, pad_to_multiple, window_attention, window_grid)
from ..registry import MODELS

BLOCK_NORM_EPS = 1e-6  # official norm_layer=partial(nn.LayerNorm, eps=1e-6) (blocks, SVT output norms)


class GlobalSubsampledAttention(nn.Module):
    """Global sub-sampled attention (GSA, PVT's spatial-reduction attention).

    ``[B, H, W, C]`` -> same shape. Queries from every token; keys and values from the map reduced by a
    conv of kernel = stride = ``sr_ratio`` plus LayerNorm (``sr_ratio = 1``: from every token). The conv
    zero-pads the map at the bottom/right to a multiple of ``sr_ratio`` (module docstring).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)  # official: default eps here

    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape
        heads = self.num_heads
        q = self.q(x).view(B, H * W, heads, C // heads).transpose(1, 2)  # [B, heads, N, d]
        if self.sr_ratio > 1:
            s = self.sr_ratio
            reduced = x.permute(0, 3, 1, 2)
            reduced = pad_to_multiple(reduced, s)  # a conv's zero border: zeros add nothing to its sums
            reduced = self.norm(self.sr(reduced).flatten(2).transpose(1, 2))  # [B, M, C]
        else:
            reduced = x.reshape(B, H * W, C)
        k, v = self.kv(reduced).view(B, -1, 2, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, None, self.attn_drop, self.training)  # [B, heads, N, d]
        return self.proj(out.transpose(1, 2).reshape(B, H, W, C))


class LocallyGroupedAttention(nn.Module):
    """Locally-grouped self-attention (LSA): attention inside non-overlapping windows.

    ``[B, H, W, C]`` (+ the map's `WindowGrid`) -> same shape. ``qkv`` and ``proj`` run on the real tokens;
    the grid pads the projected map to window multiples, and its mask keeps real tokens from attending to
    padded ones.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.window = (window_size, window_size)
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, grid: WindowGrid) -> Tensor:
        windows = grid.partition(self.qkv(x))  # [B * nW, N, 3C]
        out = window_attention(windows, self.num_heads, None, grid.mask, self.attn_drop, self.training)
        return self.proj(grid.reverse(out))


class PositionEncodingGenerator(ConvPositionEncoding):
    """PEG (Chu et al., CPVT), ``x + dwconv3x3(x)`` on ``[B, C, H, W]``, under the official key names
    (``pos_block.{i}.proj.0``: the official conv sits in a Sequential)."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.proj = nn.Sequential(self.proj)


class TwinsBlock(PreNormBlock):
    """Pre-norm block: GSA (``window_size=None``) or LSA, then MLP, each with drop path. ``[B, H, W, C]``
    (+ the stage's `WindowGrid` for LSA)."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, window_size: int | None, settings: BlockSettings,
                 drop_path: float) -> None:
        attn: nn.Module = (
            GlobalSubsampledAttention(dim=dim, num_heads=num_heads, sr_ratio=sr_ratio, qkv_bias=settings.qkv_bias,
                                      attn_drop=settings.attn_drop) if window_size is None
            else LocallyGroupedAttention(dim=dim, num_heads=num_heads, window_size=window_size,
                                         qkv_bias=settings.qkv_bias, attn_drop=settings.attn_drop))
        super().__init__(dim=dim, attn=attn, settings=settings, drop_path=drop_path)
        self.window_size = window_size


class _Twins(VisionBackbone):
    """The parts PCPVT and SVT share (see the module docstring). Key names are the official ones."""

    output_norms: bool = False
    recipes = {
        # Meituan-AutoML/Twins detection: 1x is the "PVT setting", 3x the "Swin setting".
        'mmdet': Recipe(lr=2e-4, weight_decay=1e-4),
        'mmdet_3x': Recipe(lr=1e-4, weight_decay=0.05, no_decay=('pos_block', 'norm')),
        # Meituan-AutoML/Twins segmentation configs.
        'mmseg': Recipe(lr=6e-5, weight_decay=0.01, no_decay=('pos_block', 'norm')),
    }

    def __init__(self, arch: str | dict, in_channels: int = 3, qkv_bias: bool = True, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.2,
                 out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        a = self.arch
        for key in self.arch_settings[next(iter(self.arch_settings))]:
            if len(a[key]) != NUM_STAGES or any(not isinstance(v, (int, float)) or v < 1 for v in a[key]):
                raise ValueError(f'arch[{key!r}] must have {NUM_STAGES} positive entries (one per stage), '
                                 f'got {a[key]!r}')
        dims = tuple(a['embed_dims'])
        settings = BlockSettings(qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate, norm_eps=BLOCK_NORM_EPS)
        self.num_features = dims
        self.patch_embeds = nn.ModuleList([
            PatchEmbed(in_channels if i == 0 else dims[i - 1], dims[i], patch_size=4 if i == 0 else 2)
            for i in range(NUM_STAGES)])
        self.pos_drop = nn.Dropout(drop_rate)
        drop_paths = drop_path_rates(a['depths'], drop_path_rate)
        self.blocks = nn.ModuleList([
            nn.ModuleList([
                TwinsBlock(dim=dims[i], num_heads=a['num_heads'][i], sr_ratio=a['sr_ratios'][i],
                           window_size=self.window_size(i, j),
                           settings=replace(settings, mlp_ratio=a['mlp_ratios'][i]), drop_path=drop_paths[i][j])
                for j in range(a['depths'][i])])
            for i in range(NUM_STAGES)])
        self.pos_block = nn.ModuleList([PositionEncodingGenerator(d) for d in dims])
        if self.output_norms:  # SVT: in the trunk (the next stage reads the normed map), so all four
            for i in range(NUM_STAGES):
                self.add_module(f'norm{i}', nn.LayerNorm(dims[i], eps=BLOCK_NORM_EPS))

    def window_size(self, stage: int, index: int) -> int | None:
        """LSA window of block ``index`` of ``stage``, or ``None`` for GSA."""
        return None

    def reset_parameters(self) -> None:
        """The official initialisation: truncated normal linears, unit norms, He-normal (fan-out) convs."""
        super().reset_parameters()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def stem(self) -> nn.Module:
        return self.patch_embeds[0]

    def stage_parts(self, index: int) -> list[nn.Module]:
        downsample = [self.patch_embeds[index]] if index > 0 else []
        return downsample + [self.blocks[index], self.pos_block[index]]

    def forward_stage(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if index > 0:
            x = x.permute(0, 3, 1, 2)  # the patch embedding convolves NCHW
        x = self.pos_drop(self.patch_embeds[index](x))  # [B, H_i, W_i, C_i]
        H, W = x.shape[1:3]
        grids = {b.window_size: window_grid(H, W, (b.window_size,) * 2, (0, 0), x.device)  # cached per shape
                 for b in self.blocks[index] if b.window_size is not None}
        for j, block in enumerate(self.blocks[index]):
            context = () if block.window_size is None else (grids[block.window_size],)
            x = self.run_block(block, x, *context)
            if j == 0:
                x = self.pos_block[index](x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        norm = self.output_norm(index)
        if norm is not None:
            x = norm(x)  # as the official dense SVT: the output norm also feeds the next stage
        return x, bhwc_to_nchw(x)


@MODELS.register_module()
class PCPVT(_Twins):
    """Twins-PCPVT backbone: global sub-sampled attention in every block, PEG, no output norms.

    Args:
        arch: ``'small'``, ``'base'``, ``'large'`` or a dict with ``embed_dims``, ``depths``,
            ``num_heads``, ``mlp_ratios`` and ``sr_ratios`` (4 entries each).
        qkv_bias: biases in ``q`` and ``kv`` (True in every official model).
        drop_rate: dropout after the patch embeddings, the attention projection and in the MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, linear over all blocks (official dense value 0.2).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'small': dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), num_heads=(1, 2, 5, 8),
                      mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)),
        'base': dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), num_heads=(1, 2, 5, 8),
                     mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)),
        'large': dict(embed_dims=(64, 128, 320, 512), depths=(3, 8, 27, 3), num_heads=(1, 2, 5, 8),
                      mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)),
    }
    variants = {'twins_pcpvt_s': 'small', 'twins_pcpvt_b': 'base', 'twins_pcpvt_l': 'large'}


@MODELS.register_module()
class SVT(_Twins):
    """Twins-SVT backbone: blocks alternate LSA (even blocks) and GSA (odd blocks), PEG, one LayerNorm
    after every stage (``norm0..3``: the outputs, and the input of the next stage, as the official
    ``alt_gvt_*`` with ``extra_norm=True``; new in the dense model, absent from the ImageNet checkpoints).

    Args:
        arch: ``'small'``, ``'base'``, ``'large'`` or a dict with ``embed_dims``, ``depths``,
            ``num_heads``, ``mlp_ratios``, ``sr_ratios`` and ``window_sizes`` (4 entries each).
        Others: see `PCPVT`.
    """

    output_norms = True
    arch_settings = {
        'small': dict(embed_dims=(64, 128, 256, 512), depths=(2, 2, 10, 4), num_heads=(2, 4, 8, 16),
                      mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1), window_sizes=(7, 7, 7, 7)),
        'base': dict(embed_dims=(96, 192, 384, 768), depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                     mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1), window_sizes=(7, 7, 7, 7)),
        'large': dict(embed_dims=(128, 256, 512, 1024), depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
                      mlp_ratios=(4, 4, 4, 4), sr_ratios=(8, 4, 2, 1), window_sizes=(7, 7, 7, 7)),
    }
    block_kinds = 2  # LSA and GSA
    variants = {'twins_svt_s': 'small', 'twins_svt_b': 'base', 'twins_svt_l': 'large'}

    def window_size(self, stage: int, index: int) -> int | None:
        return self.arch['window_sizes'][stage] if index % 2 == 0 else None


# ---- weight conversion --------------------------------------------------------------------------
# Our keys are the official ones (Meituan-AutoML/Twins gvt.py; timm's twins.py uses the same names),
# plus SVT's output norms ``norm{i}`` (the official dense code's ``norm_list.{i}``).
_DROP = {
    r'head\..*': 'classification head',
    r'norm\.(weight|bias)': 'final classification norm',
}
_OUTPUT_NORMS = (r'norm[0-3]\.(weight|bias)',)


def _from_official(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    # A whole official detector/segmentor (backbone.* already stripped) names the output norms norm_list.i.
    return drop(rename(sd, [(r'^norm_list\.(\d)\.', r'norm\1.')]), _DROP)


def _openmmlab_common(sd: StateDict) -> StateDict:
    return rename(sd, [
        (r'^patch_embeds\.(\d)\.projection\.', r'patch_embeds.\1.proj.'),
        (r'^position_encodings\.(\d)\.proj\.', r'pos_block.\1.proj.0.'),
        (r'^(layers|stages)\.', 'blocks.'),
        (r'\.ffn\.layers\.0\.0\.', '.mlp.fc1.'),
        (r'\.ffn\.layers\.1\.', '.mlp.fc2.'),
    ])


def _from_mmseg(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    """mmseg 1.x: GSA is ``nn.MultiheadAttention`` with a fused ``in_proj`` (rows q, k, v) and ``out_proj``;
    the SVT output norms are ``norm_list.{i}``."""
    sd = _openmmlab_common(sd)
    out: StateDict = {}
    for key, value in sd.items():
        m = re.fullmatch(r'(.*\.attn)\.attn\.in_proj_(weight|bias)', key)
        if m:
            dim = value.shape[0] // 3
            out[f'{m[1]}.q.{m[2]}'] = value[:dim]
            out[f'{m[1]}.kv.{m[2]}'] = value[dim:]  # rows k then v, as the official kv
            continue
        key = re.sub(r'\.attn\.attn\.out_proj\.', '.attn.proj.', key)
        key = re.sub(r'^norm_list\.(\d)\.', r'norm\1.', key)
        out[key] = value
    return drop(out, _DROP)


def _from_mmpretrain(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    """mmpretrain: ``stages``, ``norm_after_stage{i}``. Its ImageNet classifiers keep only
    ``norm_after_stage3``: that is the official final classification norm, not an output norm."""
    sd = _openmmlab_common(sd)
    stage_norms = {int(m[1]) for k in sd if (m := re.match(r'norm_after_stage(\d)\.', k))}
    dropped: dict[str, str] = {}
    if stage_norms == {3}:
        dropped = {k: 'final classification norm' for k in sd if k.startswith('norm_after_stage3.')}
        sd = {k: v for k, v in sd.items() if k not in dropped}
    sd = rename(sd, [(r'^norm_after_stage(\d)\.', r'norm\1.')])
    sd, more = drop(sd, _DROP)
    return sd, {**dropped, **more}


def _stage_depths(sd: Mapping[str, Tensor]) -> tuple[int, ...]:
    return tuple(sum(1 for k in sd if re.fullmatch(rf'blocks\.{i}\.\d+\.norm1\.weight', k))
                 for i in range(NUM_STAGES))


def _guesser(cls: type[_Twins]):
    def guess(sd: Mapping[str, Tensor]) -> str | None:
        if 'patch_embeds.0.proj.weight' not in sd:
            return None
        found = (sd['patch_embeds.0.proj.weight'].shape[0], _stage_depths(sd))
        return cls.variant_where(lambda s: (s['embed_dims'][0], tuple(s['depths'])), found)
    return guess


def _formats(first_attn: str, mmseg_first_attn: str) -> list[SourceFormat]:
    """The three layouts, told apart from the other Twins kind by block 0's attention keys."""
    return [
        SourceFormat('official', lambda sd: 'pos_block.0.proj.0.weight' in sd and f'blocks.0.0.attn.{first_attn}' in sd,
                     _from_official),
        SourceFormat('mmseg', lambda sd: 'position_encodings.0.proj.weight' in sd
                     and f'layers.0.0.attn.{mmseg_first_attn}' in sd, _from_mmseg),
        SourceFormat('mmpretrain', lambda sd: 'position_encodings.0.proj.weight' in sd
                     and f'stages.0.0.attn.{first_attn}' in sd, _from_mmpretrain),
    ]


register_converter(FamilyConverter(
    family='PCPVT',
    formats=_formats('q.weight', 'attn.in_proj_weight'),
    guess_variant=_guesser(PCPVT),
))
register_converter(FamilyConverter(
    family='SVT',
    formats=_formats('qkv.weight', 'qkv.weight'),
    guess_variant=_guesser(SVT),
    new_keys=_OUTPUT_NORMS,
))


# ---- reference implementations (tools/benchmark.py --reference) ---------------------------------------
def _mmseg_twins(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
    """mmseg's ``PCPVT`` / ``SVT`` with our model's configuration (mmseg spells one argument ``windiow_sizes``)."""
    from mmseg.models.backbones import PCPVT, SVT
    if opts.with_cp:
        raise ValueError("mmseg's Twins has no with_cp")
    a = ours.arch
    kw = dict(embed_dims=list(a['embed_dims']), num_heads=list(a['num_heads']), mlp_ratios=list(a['mlp_ratios']),
              depths=list(a['depths']), sr_ratios=list(a['sr_ratios']), qkv_bias=True, drop_rate=0.0,
              attn_drop_rate=0.0, drop_path_rate=opts.drop_path_rate, out_indices=tuple(ours.out_indices))
    if type(ours).__name__ == 'SVT':
        return SVT(**kw, windiow_sizes=list(a['window_sizes']), norm_after_stage=True)
    return PCPVT(**kw, norm_after_stage=False)


PCPVT.reference_builders = SVT.reference_builders = {'mmseg': _mmseg_twins}

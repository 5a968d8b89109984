"""CoaT (Xu et al., ICCV 2021): Co-Scale Conv-Attentional Image Transformers, as dense-prediction backbones.

As the official code (mlpc-ucsd/CoaT ``src/models/coat.py`` and its mmdet wrapper, which returns the four
stage maps without the class tokens and without any norm):

* four stages, each a non-overlapping conv patch embedding (kernel = stride = 4, then 2) with a LayerNorm,
  a class token prepended to the tokens, then serial blocks;
* a serial block is a convolutional position encoding (CPE: depth-wise 3x3 conv plus identity, on the image
  tokens only), then pre-norm conv-attention, then a pre-norm MLP, each with (constant) drop path;
* conv-attention = factorized attention ``scale * q (softmax_N(k)^T v)`` (the softmax runs over the tokens,
  class token included) plus the convolutional relative position encoding (CRPE) ``q * dwconv(v)`` on the
  image tokens, the heads split across 3x3 / 5x5 / 7x7 kernels ({3: 2, 5: 3, 7: 3} of 8 heads);
  the class token gets no CRPE;
* the CPE and the CRPE of a stage are one module each, shared by all the stage's blocks (serial and parallel);
* CoaT (not Lite): parallel blocks on stages 2-4 after all serial blocks. Each runs CPE + conv-attention per
  scale, adds to each scale the attention outputs of the other two resized bilinearly (class tokens are added
  as they are), then one MLP shared across the scales (separate norms). Stage 1's output is its serial output.

Shared modules are held once (by the stage, or the parallel block for the MLP) and passed to the blocks when
called, so each shared parameter appears once in ``state_dict()``, ``parameters()`` and every optimizer
parameter group. The official checkpoints list them under every path; the converter checks those copies
are identical and keeps one.

Deviations from the official code (none changes the outputs at 224x224, nor at any input whose sides are
multiples of 32, e.g. everything mmdet and mmseg feed with ``pad_size_divisor=32`` / 512 crops):

* Any ``H, W >= 32``: the patch embeddings zero-pad their input to a patch multiple (a conv's border, like
  any strided conv; the official code floors and drops the remainder), so stage ``i`` has
  ``ceil(H / 4 / 2**i) x ceil(W / 4 / 2**i)`` tokens, every one of which covers real pixels. There are no
  padded tokens: the factorized attention's softmax, the CPE and the CRPE only ever see real tokens.
* Cross-scale fusion at sizes that are not exact multiples (the official reshape fails there): upsampling
  by ``f`` interpolates with ``scale_factor=f`` and crops to the target size; downsampling by ``f`` first
  extends the map at the bottom/right by repeating its last row/column up to ``f`` times the target size,
  then interpolates with ``scale_factor=1/f``. Sample positions are therefore the official ones, and a
  position beyond the map reads the border value, as bilinear interpolation already does at the map's
  edges. Both use only real tokens, so nothing depends on any fill value.
* ``drop_path_rate`` is constant over the blocks as in the official code (not the linear schedule).
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..base import ALL_STAGES, NUM_STAGES, VisionBackbone
from ..engine.recipes import Recipe
from ..convert import ConversionError, FamilyConverter, SourceFormat, StateDict, drop, register_converter
from ..layers import BlockSettings, ConvPositionEncoding, DropPath, Mlp, PatchEmbed
from ..registry import MODELS

NORM_EPS = 1e-6  # official norm_layer=partial(nn.LayerNorm, eps=1e-6) in the blocks (patch embeddings: 1e-5)
CRPE_WINDOWS = {3: 2, 5: 3, 7: 3}  # kernel size -> number of heads (official crpe_window)
PARALLEL_STAGES = (1, 2, 3)  # the stages (0-based) the parallel blocks mix

Size = tuple[int, int]


def tokens_to_map(x: Tensor, size: Size) -> Tensor:
    """Image tokens ``[B, 1 + H*W, C]`` (class token first) -> ``[B, C, H, W]``, class token dropped."""
    B, _, C = x.shape
    return x[:, 1:].transpose(1, 2).reshape(B, C, *size)


def with_class_token(cls_token: Tensor, image: Tensor) -> Tensor:
    """``[B, 1, C]`` + ``[B, C, H, W]`` -> ``[B, 1 + H*W, C]``."""
    return torch.cat((cls_token, image.flatten(2).transpose(1, 2)), dim=1)


def apply_cpe(cpe: ConvPositionEncoding, x: Tensor, size: Size) -> Tensor:
    """The CPE (``x + dwconv3x3(x)``) on the image tokens; the class token passes unchanged. ``[B, 1 + N, C]``."""
    return with_class_token(x[:, :1], cpe(tokens_to_map(x, size)))


class ConvRelativePositionEncoding(nn.Module):
    """CRPE: ``q * dwconv(v)`` per head on the image tokens, zero for the class token.

    ``q, v``: ``[B, heads, 1 + N, d]`` -> same shape. Head groups use their own kernel size (``windows``:
    kernel size -> number of heads, in channel order).
    """

    def __init__(self, head_dim: int, num_heads: int, windows: Mapping[int, int]) -> None:
        super().__init__()
        if sum(windows.values()) != num_heads:
            raise ValueError(f'crpe_windows must split the {num_heads} heads, got {dict(windows)} '
                             f'({sum(windows.values())} heads)')
        self.channel_splits = [heads * head_dim for heads in windows.values()]
        self.conv_list = nn.ModuleList([
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
            for kernel, channels in zip(windows, self.channel_splits)])

    def forward(self, q: Tensor, v: Tensor, size: Size) -> Tensor:
        B, heads, _, d = q.shape
        v_image = v[:, :, 1:].transpose(2, 3).reshape(B, heads * d, *size)  # channels ordered (head, d)
        conv_v = torch.cat([conv(part) for conv, part in zip(self.conv_list, v_image.split(self.channel_splits, 1))],
                           dim=1)
        conv_v = conv_v.reshape(B, heads, d, -1).transpose(2, 3)  # [B, heads, N, d]
        return F.pad(q[:, :, 1:] * conv_v, (0, 0, 1, 0))  # a zero row for the class token


class FactorizedAttention(nn.Module):
    """Factorized attention plus CRPE (the official ``FactorAtt_ConvRelPosEnc``). ``[B, 1 + N, C]``.

    ``softmax_N(k)^T v`` is a ``d x d`` context per head, so the cost is linear in the number of tokens.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dims {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, size: Size, crpe: ConvRelativePositionEncoding) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        context = k.softmax(dim=2).transpose(2, 3) @ v  # [B, heads, d, d]
        out = self.scale * (q @ context) + crpe(q, v, size)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))


class SerialBlock(nn.Module):
    """CPE, then pre-norm conv-attention and MLP with drop path. ``[B, 1 + N, C]``.

    The stage's shared CPE and CRPE come in as arguments (they are the stage's modules, not the block's).
    """

    def __init__(self, dim: int, num_heads: int, settings: BlockSettings, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=settings.norm_eps)
        self.attn = FactorizedAttention(dim=dim, num_heads=num_heads, qkv_bias=settings.qkv_bias,
                                        proj_drop=settings.drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=settings.norm_eps)
        self.mlp = Mlp(dim, int(dim * settings.mlp_ratio), drop=settings.drop)

    def forward(self, x: Tensor, size: Size, cpe: ConvPositionEncoding, crpe: ConvRelativePositionEncoding) -> Tensor:
        x = apply_cpe(cpe, x, size)
        x = x + self.drop_path(self.attn(self.norm1(x), size, crpe))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def resample(x: Tensor, size: Size, target: Size, scale: int) -> Tensor:
    """Bilinear resize of the image tokens by ``2**scale`` (``scale`` may be negative); class token kept.

    ``[B, 1 + H*W, C]`` -> ``[B, 1 + Ht*Wt, C]``. Sample positions are those of ``F.interpolate`` with the
    official ``scale_factor``; the map is extended by border replication (downsampling) or cropped
    (upsampling) where ``target`` is not exactly ``size * 2**scale`` (module docstring).
    """
    image = tokens_to_map(x, size)
    factor = 2 ** abs(scale)
    if scale < 0:
        image = F.pad(image, (0, target[1] * factor - size[1], 0, target[0] * factor - size[0]), mode='replicate')
    image = F.interpolate(image, scale_factor=float(2 ** scale), mode='bilinear')[:, :, :target[0], :target[1]]
    # Made contiguous before flattening (a copy only where something was cropped, as flattening would make): left
    # to flatten, whether the crop is a view would be a guard under torch.compile, and every size that crops would
    # compile once more.
    image = image.contiguous()
    return with_class_token(x[:, :1], image)


class ParallelBlock(nn.Module):
    """One CoaT parallel block over stages 2-4: per-scale CPE and conv-attention, cross-scale fusion, then one
    MLP shared by the scales (per-scale norms). Inputs and outputs: three ``[B, 1 + N_s, C]``.

    The stages' shared CPEs and CRPEs come in as arguments.
    """

    def __init__(self, dim: int, num_heads: int, settings: BlockSettings, drop_path: float) -> None:
        super().__init__()
        self.attn_norms = nn.ModuleList([nn.LayerNorm(dim, eps=settings.norm_eps) for _ in PARALLEL_STAGES])
        self.attns = nn.ModuleList([FactorizedAttention(dim=dim, num_heads=num_heads, qkv_bias=settings.qkv_bias,
                                                        proj_drop=settings.drop) for _ in PARALLEL_STAGES])
        self.drop_path = DropPath(drop_path)
        self.mlp_norms = nn.ModuleList([nn.LayerNorm(dim, eps=settings.norm_eps) for _ in PARALLEL_STAGES])
        self.mlp = Mlp(dim, int(dim * settings.mlp_ratio), drop=settings.drop)

    def forward(self, x2: Tensor, x3: Tensor, x4: Tensor, sizes: tuple[Size, ...],
                cpes: Sequence[ConvPositionEncoding], crpes: Sequence[ConvRelativePositionEncoding]
                ) -> tuple[Tensor, ...]:
        xs = [apply_cpe(cpe, x, size) for cpe, x, size in zip(cpes, (x2, x3, x4), sizes)]
        attended = [attn(norm(x), size, crpe)
                    for attn, norm, crpe, x, size in zip(self.attns, self.attn_norms, crpes, xs, sizes)]
        fused = []
        for i, size in enumerate(sizes):  # scale i gets every other scale j resized by 2**(j - i)
            out = attended[i]
            for j, other in enumerate(attended):
                if j != i:
                    out = out + resample(other, sizes[j], size, j - i)
            fused.append(out)
        xs = [x + self.drop_path(f) for x, f in zip(xs, fused)]
        return tuple(x + self.drop_path(self.mlp(norm(x))) for x, norm in zip(xs, self.mlp_norms))


class CoaTStage(nn.Module):
    """What a stage owns besides its patch embedding: the class token, the shared CPE and CRPE, the serial
    blocks. (Its parallel-block parts live in the backbone's ``parallel_blocks``.)"""

    def __init__(self, dim: int, depth: int, num_heads: int, settings: BlockSettings, drop_path: float,
                 crpe_windows: Mapping[int, int]) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cpe = ConvPositionEncoding(dim)
        self.crpe = ConvRelativePositionEncoding(head_dim=dim // num_heads, num_heads=num_heads, windows=crpe_windows)
        self.blocks = nn.ModuleList([SerialBlock(dim=dim, num_heads=num_heads, settings=settings, drop_path=drop_path)
                                     for _ in range(depth)])


@MODELS.register_module()
class CoaT(VisionBackbone):
    """CoaT and CoaT-Lite backbones (see the module docstring).

    Args:
        arch: ``'lite_tiny'``, ``'lite_mini'``, ``'lite_small'``, ``'lite_medium'``, ``'tiny'``, ``'mini'``,
            ``'small'`` or a dict with ``embed_dims``, ``serial_depths``, ``mlp_ratios`` (4 entries each),
            ``parallel_depth`` and ``num_heads``.
        qkv_bias: biases in ``qkv`` (True in every official model).
        drop_rate: dropout after the attention projection and in the MLP.
        drop_path_rate: stochastic depth, the same rate in every block as the official code (default 0, the
            official default and the value of its detection configs for CoaT-Lite Mini/Small and CoaT Mini).
        crpe_windows: CRPE kernel size -> number of heads (official ``{3: 2, 5: 3, 7: 3}``).
        Others: see `VisionBackbone`.
    """

    arch_settings = {
        'lite_tiny': dict(embed_dims=(64, 128, 256, 320), serial_depths=(2, 2, 2, 2), parallel_depth=0,
                          num_heads=8, mlp_ratios=(8, 8, 4, 4)),
        'lite_mini': dict(embed_dims=(64, 128, 320, 512), serial_depths=(2, 2, 2, 2), parallel_depth=0,
                          num_heads=8, mlp_ratios=(8, 8, 4, 4)),
        'lite_small': dict(embed_dims=(64, 128, 320, 512), serial_depths=(3, 4, 6, 3), parallel_depth=0,
                           num_heads=8, mlp_ratios=(8, 8, 4, 4)),
        'lite_medium': dict(embed_dims=(128, 256, 320, 512), serial_depths=(3, 6, 10, 8), parallel_depth=0,
                            num_heads=8, mlp_ratios=(4, 4, 4, 4)),
        'tiny': dict(embed_dims=(152, 152, 152, 152), serial_depths=(2, 2, 2, 2), parallel_depth=6,
                     num_heads=8, mlp_ratios=(4, 4, 4, 4)),
        'mini': dict(embed_dims=(152, 216, 216, 216), serial_depths=(2, 2, 2, 2), parallel_depth=6,
                     num_heads=8, mlp_ratios=(4, 4, 4, 4)),
        'small': dict(embed_dims=(152, 320, 320, 320), serial_depths=(2, 2, 2, 2), parallel_depth=6,
                      num_heads=8, mlp_ratios=(4, 4, 4, 4)),
    }
    variants = {'coat_lite_tiny': 'lite_tiny', 'coat_lite_mini': 'lite_mini', 'coat_lite_small': 'lite_small',
                'coat_lite_medium': 'lite_medium', 'coat_tiny': 'tiny', 'coat_mini': 'mini', 'coat_small': 'small'}
    recipes = {
        # mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_*_mstrain_480-800_adamw_{1x,3x}_coco.py
        # (paramwise_cfg=None: decay on every parameter)
        'mmdet': Recipe(lr=1e-4, weight_decay=0.05),
        # No ADE20K config published: Swin's UperNet recipe, position encodings and class tokens without decay.
        'mmseg': Recipe(lr=6e-5, weight_decay=0.01, no_decay=('cls_token', 'cpe', 'crpe', 'norm')),
    }

    def __init__(self, arch: str | dict, in_channels: int = 3, qkv_bias: bool = True, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, crpe_windows: Mapping[int, int] | None = None,
                 out_indices: Sequence[int] = ALL_STAGES, frozen_stages: int = -1, norm_eval: bool = False,
                 with_cp: bool = False, init_cfg: dict | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(arch=arch, in_channels=in_channels, out_indices=out_indices, frozen_stages=frozen_stages,
                         norm_eval=norm_eval, with_cp=with_cp, drop_path_rate=drop_path_rate, init_cfg=init_cfg,
                         pretrained=pretrained, compile_blocks=compile_blocks)
        a = self.arch
        for key in ('embed_dims', 'serial_depths', 'mlp_ratios'):
            if len(a[key]) != NUM_STAGES or any(not isinstance(v, (int, float)) or v < 1 for v in a[key]):
                raise ValueError(f'arch[{key!r}] must have {NUM_STAGES} positive entries (one per stage), '
                                 f'got {a[key]!r}')
        if not isinstance(a['parallel_depth'], int) or a['parallel_depth'] < 0:
            raise ValueError(f"arch['parallel_depth'] must be an int >= 0, got {a['parallel_depth']!r}")
        dims = tuple(a['embed_dims'])
        if a['parallel_depth'] and (len(set(dims[1:])) != 1 or len(set(a['mlp_ratios'][1:])) != 1):
            raise ValueError('parallel blocks share one MLP across stages 2-4: arch embed_dims[1:] and '
                             f"mlp_ratios[1:] must be equal, got {dims} and {a['mlp_ratios']}")
        windows = dict(CRPE_WINDOWS if crpe_windows is None else crpe_windows)
        settings = BlockSettings(qkv_bias=qkv_bias, drop=drop_rate, norm_eps=NORM_EPS)
        self.num_features = dims
        for i in range(NUM_STAGES):  # official names patch_embed1..4
            self.add_module(f'patch_embed{i + 1}', PatchEmbed(in_channels if i == 0 else dims[i - 1], dims[i],
                                                               patch_size=4 if i == 0 else 2))
        self.stages = nn.ModuleList([
            CoaTStage(dim=dims[i], depth=a['serial_depths'][i], num_heads=a['num_heads'],
                      settings=replace(settings, mlp_ratio=a['mlp_ratios'][i]), drop_path=drop_path_rate,
                      crpe_windows=windows)
            for i in range(NUM_STAGES)])
        self.parallel_blocks = nn.ModuleList([
            ParallelBlock(dim=dims[1], num_heads=a['num_heads'],
                          settings=replace(settings, mlp_ratio=a['mlp_ratios'][1]), drop_path=drop_path_rate)
            for _ in range(a['parallel_depth'])])

    @property
    def patch_embeds(self) -> list[PatchEmbed]:
        return [getattr(self, f'patch_embed{i + 1}') for i in range(NUM_STAGES)]

    def reset_parameters(self) -> None:
        """The official initialisation: truncated normal linears and class tokens, unit norms, PyTorch's
        default for the convs (set at construction)."""
        super().reset_parameters()
        for stage in self.stages:
            nn.init.trunc_normal_(stage.cls_token, std=0.02)

    @property
    def stem(self) -> nn.Module:
        return self.patch_embed1

    def stage_parts(self, index: int) -> list[nn.Module]:
        return ([self.patch_embeds[index]] if index > 0 else []) + [self.stages[index]]

    def stage_modules(self, index: int) -> list[nn.Module]:
        if index <= 1 or not self.parallel_blocks:
            return super().stage_modules(index)
        # CoaT: outputs 2-4 all come out of the parallel blocks, which mix the three scales, so output 2
        # depends on everything of stages 2-4 except the last block's MLP norms of scales 3 and 4.
        last = self.parallel_blocks[-1]
        if index == 2:
            return [*self.patch_embeds[1:], *self.stages[1:], *self.parallel_blocks[:-1],
                    last.attn_norms, last.attns, last.mlp, last.mlp_norms[0]]
        return [last.mlp_norms[index - 2]]

    def serial_stage(self, index: int, x: Tensor) -> tuple[Tensor, Size]:
        """Stage ``index``'s patch embedding and serial blocks: the image or the previous stage's map
        ``[B, C, H, W]`` -> the tokens ``[B, 1 + H_i * W_i, C_i]`` (class token first) and ``(H_i, W_i)``."""
        x = self.patch_embeds[index](x)  # [B, H, W, C]
        B, H, W, C = x.shape
        stage = self.stages[index]
        x = torch.cat((stage.cls_token.expand(B, -1, -1), x.reshape(B, H * W, C)), dim=1)
        for block in stage.blocks:
            x = self.run_block(block, x, (H, W), stage.cpe, stage.crpe)
        return x, (H, W)

    def forward_stage(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Without parallel blocks: the stage's map is its output and the next stage's input."""
        out = tokens_to_map(*self.serial_stage(index, x))
        return out, out

    def forward_features(self, x: Tensor) -> list[Tensor]:
        if not self.parallel_blocks or self.last_stage == 0:
            return super().forward_features(x)
        # The parallel blocks mix stages 2-4: every stage runs, whatever the last requested one.
        tokens: list[Tensor] = []
        sizes: list[Size] = []
        for index in range(NUM_STAGES):
            stage_tokens, size = self.serial_stage(index, x)
            tokens.append(stage_tokens)
            sizes.append(size)
            x = tokens_to_map(stage_tokens, size)
        scales = tuple(tokens[1:])
        cpes = [stage.cpe for stage in self.stages[1:]]
        crpes = [stage.crpe for stage in self.stages[1:]]
        for block in self.parallel_blocks:
            scales = self.run_block(block, *scales, tuple(sizes[1:]), cpes, crpes)
        tokens[1:] = scales
        return [tokens_to_map(t, size).contiguous() for t, size in zip(tokens, sizes)][:self.last_stage + 1]


# ---- weight conversion --------------------------------------------------------------------------
# The official layout (= timm's names): top-level cls_token{i}, cpe{i}, crpe{i}, serial_blocks{i}.{j}
# (each block also lists the shared ``cpe`` and ``factoratt_crpe.crpe``), parallel_blocks.{j} (norm1{s},
# factoratt_crpe{s} listing the shared crpe{s}, norm2{s}, mlp2 = mlp3 = mlp4 one shared module) for s = 2..4.
_SHARED_COPIES = [  # (copy pattern, the official module it is a copy of)
    (r'serial_blocks(\d)\.\d+\.cpe\.(.+)', r'cpe\1.\2'),
    (r'serial_blocks(\d)\.\d+\.factoratt_crpe\.crpe\.(.+)', r'crpe\1.\2'),
    (r'parallel_blocks\.\d+\.factoratt_crpe([234])\.crpe\.(.+)', r'crpe\1.\2'),
    (r'(parallel_blocks\.\d+)\.mlp[34]\.(.+)', r'\1.mlp2.\2'),
]
_RENAMES = [
    (r'^cls_token([1-4])$', lambda m: f'stages.{int(m[1]) - 1}.cls_token'),
    (r'^(cpe|crpe)([1-4])\.', lambda m: f'stages.{int(m[2]) - 1}.{m[1]}.'),
    (r'^serial_blocks([1-4])\.(\d+)\.factoratt_crpe\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.{m[2]}.attn.'),
    (r'^serial_blocks([1-4])\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.'),
    (r'^(parallel_blocks\.\d+)\.norm1([234])\.', lambda m: f'{m[1]}.attn_norms.{int(m[2]) - 2}.'),
    (r'^(parallel_blocks\.\d+)\.factoratt_crpe([234])\.', lambda m: f'{m[1]}.attns.{int(m[2]) - 2}.'),
    (r'^(parallel_blocks\.\d+)\.norm2([234])\.', lambda m: f'{m[1]}.mlp_norms.{int(m[2]) - 2}.'),
    (r'^(parallel_blocks\.\d+)\.mlp2\.', r'\1.mlp.'),
]
_DROP = {
    r'head\..*': 'classification head',
    r'norm[1-4]\.(weight|bias)': 'classification norm',
    r'aggregate\..*': 'classification aggregation of the class tokens',
}


def shared_copies(state_dict: Mapping[str, Tensor]) -> dict[str, str]:
    """The keys of an official/timm CoaT state_dict that repeat a shared module: copy key -> the key of the
    module it repeats (``{}`` for any other layout)."""
    out = {}
    for key in state_dict:
        for pattern, original in _SHARED_COPIES:
            m = re.fullmatch(pattern, key)
            if m:
                out[key] = m.expand(original)
                break
    return out


def _drop_identical_copies(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    """Keeps one tensor per shared module; `ConversionError` naming the copies that differ from it."""
    copies = shared_copies(sd)
    differing, dropped = [], {}
    for key, original in copies.items():
        if original not in sd:  # a file without the module's own entry: its first copy stands for it
            sd[original] = sd[key]
        elif not torch.equal(sd[key], sd[original]):
            differing.append(f'{key} != {original}')
        dropped[key] = f'copy of a shared module (identical to {original})'
    if differing:
        raise ConversionError(f'a shared CoaT module has differing copies in the checkpoint ({len(differing)}): '
                              + '; '.join(differing[:10]) + (' ...' if len(differing) > 10 else ''))
    return {k: v for k, v in sd.items() if k not in copies}, dropped


def _rename(sd: StateDict) -> StateDict:
    out = {}
    for key, value in sd.items():
        for pattern, replacement in _RENAMES:
            key, count = re.subn(pattern, replacement, key)
            if count:
                break
        out[key] = value
    return out


def _from_official(sd: StateDict) -> tuple[StateDict, dict[str, str]]:
    sd, dropped = _drop_identical_copies(dict(sd))
    sd, more = drop(_rename(sd), _DROP)
    return sd, {**dropped, **more}


def _is_coat(sd: Mapping[str, Tensor]) -> bool:
    return 'cpe1.proj.weight' in sd and 'serial_blocks1.0.norm1.weight' in sd


def _guess_variant(sd: Mapping[str, Tensor]) -> str | None:
    if 'patch_embed1.proj.weight' not in sd or 'stages.0.cls_token' not in sd:
        return None
    depths = tuple(sum(1 for k in sd if re.fullmatch(rf'stages\.{i}\.blocks\.\d+\.norm1\.weight', k))
                   for i in range(NUM_STAGES))
    found = (tuple(sd[f'stages.{i}.cls_token'].shape[-1] for i in range(NUM_STAGES)), depths,
             sum(1 for k in sd if re.fullmatch(r'parallel_blocks\.\d+\.mlp\.fc1\.weight', k)))
    return CoaT.variant_where(lambda s: (tuple(s['embed_dims']), tuple(s['serial_depths']), s['parallel_depth']),
                              found)


register_converter(FamilyConverter(
    family='CoaT',
    formats=[
        # The official classifiers keep norm1..4 (norm1 is never used); an official dense checkpoint
        # (mmdet wrapper, backbone.* stripped) has no norms and no head.
        SourceFormat('official', lambda sd: _is_coat(sd) and ('norm1.weight' in sd or 'head.weight' not in sd),
                     _from_official),
        # timm's coat_*: the official names, without the unused norms (Lite keeps norm4, CoaT norm2-4).
        SourceFormat('timm', _is_coat, _from_official),
    ],
    guess_variant=_guess_variant,
    shared_copies=shared_copies,
))

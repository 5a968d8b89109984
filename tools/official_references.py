"""Benchmark references from the official repositories: a ``--reference-plugin`` for ``tools/benchmark.py``.

    git clone https://github.com/mlpc-ucsd/CoaT              $ROOT/CoaT
    git clone https://github.com/cheerss/CrossFormer         $ROOT/CrossFormer
    git clone https://github.com/mulinmeng/Shuffle-Transformer $ROOT/Shuffle-Transformer
    git clone https://github.com/microsoft/Focal-Transformer $ROOT/Focal-Transformer
    VT_OFFICIAL_ROOT=$ROOT python tools/benchmark.py focal_t --reference-plugin tools/official_references.py \\
        --reference official ...

The official files are imported from those checkouts (nothing of them is shipped here). Swin and Twins are
measured against mmdet / mmseg (``--reference auto``), which hold the official code ported to mmcv 2.

What each reference is (the official dense backbone where the repository has one):
    CoaT         ``src/models/coat.py`` with ``return_interm_layers`` (what its detection code uses)
    CrossFormer  ``models/crossformer_backbone_det.py`` (the detection backbone)
    Shuffle      ``models/shuffle_transformer.py``: the classification model's token stem and four stages (no
                 dense backbone in the repository; no padding, so sizes must be multiples of 224: 448, not 512)
    Focal        ``classification/focal_transformer.py``: its patch embedding and four stages (no dense backbone
                 released), built for the measured size
The ImageNet settings of each variant are the official configs' (group sizes, intervals, focal levels, ...).

These files import three helpers from timm (``DropPath``, ``to_2tuple``, ``trunc_normal_``) and CrossFormer's
detection backbone imports mmcv 1.x / mmdet 2.x; where timm is not installed (it pulls torchvision) a stand-in
module provides the three (DropPath is ours: the same per-sample stochastic depth), and the mmcv 1.x imports are mapped onto mmengine and mmcv 2.
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vt_backbones.layers import DropPath  # noqa: E402  (timm's semantics: per-sample stochastic depth)

ROOT_VARIABLE = 'VT_OFFICIAL_ROOT'
FILES = {'coat': 'CoaT/src/models/coat.py',
         'crossformer': 'CrossFormer/models/crossformer_backbone_det.py',
         'shuffle': 'Shuffle-Transformer/models/shuffle_transformer.py',
         'focal': 'Focal-Transformer/classification/focal_transformer.py'}


def official_file(key: str) -> Path:
    root = os.environ.get(ROOT_VARIABLE)
    if not root:
        raise RuntimeError(f'set {ROOT_VARIABLE} to the directory holding the official checkouts (see '
                           f'tools/official_references.py)')
    path = Path(root) / FILES[key]
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: expected the official repository checked out as '
                                f'{Path(root) / FILES[key].split("/")[0]}')
    return path


def to_2tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def _provide_timm_helpers() -> None:
    """The timm names the official files import, where timm itself is not installed."""
    try:
        import timm  # noqa: F401
        return
    except ImportError:
        pass
    layers = types.ModuleType('timm.models.layers')
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = DropPath, to_2tuple, nn.init.trunc_normal_
    registry = types.ModuleType('timm.models.registry')
    registry.register_model = lambda fn: fn
    data = types.ModuleType('timm.data')
    data.IMAGENET_DEFAULT_MEAN, data.IMAGENET_DEFAULT_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    models = types.ModuleType('timm.models')
    models.layers, models.registry = layers, registry
    timm = types.ModuleType('timm')
    timm.models, timm.data = models, data
    sys.modules.update({'timm': timm, 'timm.models': models, 'timm.models.layers': layers,
                        'timm.models.registry': registry, 'timm.data': data})


def load(key: str, imports: dict[str, str] | None = None) -> types.ModuleType:
    """The official file as a module; ``imports`` maps import lines it has to the ones to run instead."""
    _provide_timm_helpers()
    path = official_file(key)
    source = path.read_text()
    for old, new in (imports or {}).items():
        if old not in source:
            raise RuntimeError(f'{path}: expected the line {old!r} (another version of the repository?)')
        source = source.replace(old, new)
    module = types.ModuleType(f'official_{key}')
    exec(compile(source, str(path), 'exec'), module.__dict__)
    return module


class StageOutputs(nn.Module):
    """An official model whose forward is ``run(model, x)``: the list of stage outputs."""

    def __init__(self, model: nn.Module, run: Callable[[nn.Module, Tensor], list[Tensor]]) -> None:
        super().__init__()
        self.model, self.run = model, run

    def forward(self, x: Tensor) -> list[Tensor]:
        return self.run(self.model, x)


def coat(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
    features = ['x1_nocls', 'x2_nocls', 'x3_nocls', 'x4_nocls']
    model = getattr(load('coat'), variant)(return_interm_layers=True, out_features=features,
                                           drop_path_rate=opts.drop_path_rate)
    return StageOutputs(model, lambda m, x: list(m(x).values()))


# Depths, widths and heads of the official configs (the same for CrossFormer's detection and ImageNet models).
CROSSFORMER = {'crossformer_t': dict(embed_dim=64, depths=[1, 1, 8, 6], num_heads=[2, 4, 8, 16]),
               'crossformer_s': dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
               'crossformer_b': dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
               'crossformer_l': dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])}
SHUFFLE = {'shuffle_t': dict(embed_dim=96, layers=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
           'shuffle_s': dict(embed_dim=96, layers=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
           'shuffle_b': dict(embed_dim=128, layers=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])}
FOCAL = {'focal_t': dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
         'focal_s': dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
         'focal_b': dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])}
# CrossFormer's detection backbone was written for mmcv 1.x and mmdet 2.x.
MMCV1_IMPORTS = {
    'from mmdet.utils import get_root_logger': 'import logging\nget_root_logger = logging.getLogger',
    'from mmcv.runner import load_checkpoint': 'from mmengine.runner import load_checkpoint',
    'from mmcv.cnn import build_norm_layer, constant_init, trunc_normal_init':
        'from mmcv.cnn import build_norm_layer\nfrom mmengine.model import constant_init, trunc_normal_init',
    'from mmcv.cnn.utils.weight_init import trunc_normal_': 'from mmengine.model.weight_init import trunc_normal_',
    'from mmcv.runner import BaseModule, ModuleList, _load_checkpoint':
        'from mmengine.model import BaseModule, ModuleList\nfrom mmengine.runner.checkpoint import _load_checkpoint',
}


def crossformer(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
    model = load('crossformer', MMCV1_IMPORTS).CrossFormer(img_size=list(opts.size), patch_size=[4, 8, 16, 32], **CROSSFORMER[variant],
                               group_size=[7, 7, 7, 7], crs_interval=[8, 4, 2, 1], mlp_ratio=4.0,
                               merge_size=[[2, 4], [2, 4], [2, 4]], drop_path_rate=opts.drop_path_rate,
                               use_checkpoint=opts.with_cp)
    return StageOutputs(model, lambda m, x: m(x))


def _shuffle_stages(model: nn.Module, x: Tensor) -> list[Tensor]:
    x = model.to_token(x)
    outs = []
    for stage in (model.stage1, model.stage2, model.stage3, model.stage4):
        x = stage(x)
        outs.append(x)
    return outs


def shuffle(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
    if any(side % 224 for side in opts.size):
        raise ValueError(f'the official Shuffle Transformer takes sizes that are multiples of 224 (its windows '
                         f'are not padded), got {opts.size[0]}x{opts.size[1]}')
    model = load('shuffle').ShuffleTransformer(img_size=opts.size[0], **SHUFFLE[variant], window_size=7,
                                               qkv_bias=True, drop_path_rate=opts.drop_path_rate)
    return StageOutputs(model, _shuffle_stages)


def _focal_stages(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The official ``BasicLayer.forward`` with the map before its downsampling kept."""
    x = model.pos_drop(model.patch_embed(x))
    outs = []
    for layer in model.layers:
        for block in layer.blocks:
            x = block(x)
        outs.append(x)
        if layer.downsample is not None:
            H, W = layer.input_resolution
            x = layer.downsample(x.view(x.shape[0], H, W, -1).permute(0, 3, 1, 2).contiguous())
    return outs


def focal(variant: str, ours: nn.Module, opts: Any) -> nn.Module:
    if opts.with_cp:
        raise ValueError('the official Focal reference is measured without activation checkpointing')
    model = load('focal').FocalTransformer(
        img_size=tuple(opts.size), **FOCAL[variant], window_size=7, focal_pool='fc', focal_stages=[0, 1, 2, 3],
        focal_levels=[2, 2, 2, 2], focal_windows=[7, 5, 3, 1], expand_sizes=[3, 3, 3, 3], expand_layer='all',
        use_conv_embed=False, use_shift=False, drop_path_rate=opts.drop_path_rate)
    return StageOutputs(model, _focal_stages)


REFERENCE_BUILDERS = {'official': {'CoaT': coat, 'CrossFormer': crossformer, 'ShuffleTransformer': shuffle,
                                   'FocalTransformer': focal}}

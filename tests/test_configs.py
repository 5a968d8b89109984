"""Every config under configs/ (except _base_) loads, names a vt_backbones backbone, builds and follows its recipe.

Configs are found on disk, so configs added later for other families are built too. Every registered variant must
have its three recipe configs; their optimizer must be the family's ``recipes`` (registered with the family
class, a family without one fails) and their drop path the published one where ``DROP_PATH`` lists it; the
schedule, batch and crop facts hold for every recipe config; demo configs (configs/demo/) are only loaded and built.
No forward passes; the models are built on the meta device (structure only) except for the optimizer test.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import vt_backbones
from vt_backbones.weights import CATALOGUE

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / 'configs'
CONFIGS = sorted(p for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.relative_to(CONFIG_DIR).parts)
RECIPE_CONFIGS = [p for p in CONFIGS if p.parent == CONFIG_DIR]  # configs/demo/ holds shrunk demos

# Task by file-name prefix: (default_scope, number of classes).
TASKS = {'maskrcnn': ('mmdet', 80), 'cascade': ('mmdet', 80), 'upernet': ('mmseg', 150)}

# Drop path of the configs that reproduce a published official config exactly.
DROP_PATH = {
    'maskrcnn_swin_t': 0.1,  # mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_1x_coco.py
    'maskrcnn_swin_t_3x': 0.2,  # mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco.py
    'maskrcnn_swin_s_3x': 0.2,  # mask_rcnn_swin_small_patch4_window7_mstrain_480-800_adamw_3x_coco.py
    'maskrcnn_swin_b_3x': 0.3,  # cascade_mask_rcnn_swin_base_patch4_window7_..._adamw_3x_coco.py (Swin-B backbone)
    'upernet_swin_t': 0.3,  # upernet_swin_tiny_patch4_window7_512x512_160k_ade20k.py
    'upernet_swin_s': 0.3,  # upernet_swin_small_patch4_window7_512x512_160k_ade20k.py
    'upernet_swin_b': 0.3,  # upernet_swin_base_patch4_window7_512x512_160k_ade20k.py
    'cascade_maskrcnn_swin_t': 0.0,  # cascade_mask_rcnn_swin_tiny_patch4_window7_..._adamw_1x_coco.py
    'cascade_maskrcnn_swin_t_3x': 0.2, 'cascade_maskrcnn_swin_s_3x': 0.2,  # ..._{tiny,small}_..._3x_coco.py
    'cascade_maskrcnn_swin_b_3x': 0.3,  # cascade_mask_rcnn_swin_base_patch4_window7_..._adamw_3x_coco.py
    # Focal Transformer (dense configs never released): the values of Swin's configs for the same size.
    'maskrcnn_focal_t': 0.1, 'maskrcnn_focal_t_3x': 0.2, 'maskrcnn_focal_s': 0.2, 'maskrcnn_focal_s_3x': 0.2,
    'maskrcnn_focal_b': 0.3, 'maskrcnn_focal_b_3x': 0.3,
    'upernet_focal_t': 0.3, 'upernet_focal_s': 0.3, 'upernet_focal_b': 0.3,
    # GG-Transformer (no published config): the drop path of the Swin config each one copies.
    'maskrcnn_gg_t': 0.1, 'maskrcnn_gg_t_3x': 0.2, 'maskrcnn_gg_s': 0.2, 'maskrcnn_gg_s_3x': 0.2,
    'upernet_gg_t': 0.3, 'upernet_gg_s': 0.3,
    # Meituan-AutoML/Twins: detection 0.2 throughout; segmentation per variant.
    **{f'maskrcnn_twins_{v}{s}': 0.2 for v in ('pcpvt_s', 'pcpvt_b', 'pcpvt_l', 'svt_s', 'svt_b', 'svt_l')
       for s in ('', '_3x')},
    'upernet_twins_pcpvt_s': 0.2, 'upernet_twins_pcpvt_b': 0.3, 'upernet_twins_pcpvt_l': 0.3,
    'upernet_twins_svt_s': 0.2, 'upernet_twins_svt_b': 0.2, 'upernet_twins_svt_l': 0.3,
    # cheerss/CrossFormer crossformer_factory.py backbone wrappers (detection: S, B; segmentation: S, B, L).
    'maskrcnn_crossformer_s': 0.2, 'maskrcnn_crossformer_b': 0.3,
    'upernet_crossformer_s': 0.2, 'upernet_crossformer_b': 0.3, 'upernet_crossformer_l': 0.5,
    # mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_*_mstrain_480-800_adamw_{1x,3x}_coco.py.
    **{f'maskrcnn_coat_{v}{s}': rate for v, rate in (('lite_mini', 0.0), ('lite_small', 0.0), ('mini', 0.0), ('small', 0.2))
       for s in ('', '_3x')},
    # Shuffle Transformer (no official dense configs): the values of Swin's configs for the same size.
    'maskrcnn_shuffle_t': 0.1, 'maskrcnn_shuffle_t_3x': 0.2, 'maskrcnn_shuffle_s': 0.2, 'maskrcnn_shuffle_s_3x': 0.2,
    'maskrcnn_shuffle_b': 0.3, 'maskrcnn_shuffle_b_3x': 0.3,
    'upernet_shuffle_t': 0.3, 'upernet_shuffle_s': 0.3, 'upernet_shuffle_b': 0.3,
}


def _id(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


def _task(path: Path) -> str:
    prefix = path.stem.split('_')[0]
    assert prefix in TASKS, f'{_id(path)}: unknown task prefix {prefix!r} (expected one of {sorted(TASKS)})'
    return TASKS[prefix][0]


def _backbone_class(cfg: Config) -> str:
    scope, _, name = cfg.model.backbone.type.partition('.')
    assert scope == 'vt_backbones' and name, f'backbone type {cfg.model.backbone.type!r} is not a vt_backbones one'
    assert vt_backbones.MODELS.get(name) is not None, f'{name} is not registered in vt_backbones'
    return name


def _registry(scope: str):
    if scope == 'mmdet':
        pytest.importorskip('mmdet')
        from mmdet.registry import MODELS
    else:
        pytest.importorskip('mmseg')
        from mmseg.registry import MODELS
    return MODELS


def _build(cfg: Config, device: str = 'cpu'):
    """The model of ``cfg`` with the backbone's pretrained file dropped (building never loads it anyway).

    On the ``meta`` device no memory is allocated or initialised: the structure (channels, heads) is the same,
    and a Swin-L Mask R-CNN builds in about a second instead of ten.
    """
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    init_default_scope(cfg.default_scope)
    registry = _registry(cfg.default_scope)
    with torch.device(device):
        return registry.build(model_cfg)


def _scheduler(cfg: Config, type_: str) -> dict:
    found = [s for s in cfg.param_scheduler if s['type'] == type_]
    assert len(found) == 1, f'expected one {type_} in param_scheduler, got {cfg.param_scheduler}'
    return found[0]


@pytest.mark.parametrize('variant', vt_backbones.list_models())
def test_every_variant_has_its_configs(variant):
    names = {p.stem for p in RECIPE_CONFIGS}
    missing = {f'maskrcnn_{variant}', f'maskrcnn_{variant}_3x', f'upernet_{variant}'} - names
    assert not missing, f'configs/ lacks {sorted(missing)}'


def test_every_swin_variant_has_its_configs():
    swin = [v for v in vt_backbones.list_models() if v.startswith('swin_')]
    assert swin == ['swin_t', 'swin_s', 'swin_b', 'swin_l']
    assert {'maskrcnn_shuffle_t_mini', 'upernet_swin_t_mini'} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize('family', vt_backbones.families(), ids=lambda cls: cls.__name__)
def test_every_family_has_its_recipes(family):
    assert {'mmdet', 'mmseg'} <= set(family.recipes), f'{family.__name__}.recipes lacks a task'


@pytest.mark.parametrize('path', CONFIGS, ids=_id)
def test_config_builds(path: Path):
    cfg = Config.fromfile(str(path))
    assert path.read_text().startswith('#'), 'the first line must name the recipe and its source'
    scope = _task(path)
    assert cfg.default_scope == scope
    assert 'vt_backbones' in cfg.custom_imports['imports']
    _backbone_class(cfg)

    model = _build(cfg, device='meta')
    out_channels = list(model.backbone.out_channels)
    assert len(out_channels) == len(cfg.model.backbone.out_indices)
    # The dataset's classes: all of COCO / ADE20K, unless the config names a subset (the mini COCO demo draws 4).
    subset = cfg.train_dataloader.dataset.get('metainfo', {}).get('classes')
    num_classes = len(subset) if subset else TASKS[path.stem.split('_')[0]][1]
    if scope == 'mmdet':
        assert list(model.neck.in_channels) == out_channels
        for head in (model.roi_head.bbox_head, model.roi_head.mask_head):  # one per stage in Cascade R-CNN
            assert all(h.num_classes == num_classes for h in (head if isinstance(head, torch.nn.ModuleList) else [head]))
    else:
        head, aux = model.decode_head, model.auxiliary_head
        assert [out_channels[i] for i in head.in_index] == list(head.in_channels)
        assert list(head.in_index) == list(range(len(out_channels)))
        assert aux.in_index == 2, 'the auxiliary FCN head reads stage 3'
        assert aux.in_channels == out_channels[2]
        assert head.num_classes == aux.num_classes == num_classes


@pytest.mark.parametrize('path', RECIPE_CONFIGS, ids=_id)
def test_recipe(path: Path):
    cfg = Config.fromfile(str(path))
    scope = _task(path)
    family = _backbone_class(cfg)

    # 16 images per iteration: 8 GPUs x 2 (auto_scale_lr records the batch the lr is for).
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16

    # The backbone starts from its variant's ImageNet weights: the catalogue's first direct source (URL or hub
    # repository), else the catalogue's file under checkpoints/ (vt_backbones/weights.py).
    init_cfg = cfg.model.backbone.init_cfg
    weights = CATALOGUE[re.fullmatch(r'(?:cascade_)?(?:maskrcnn|upernet)_(.+?)(?:_3x)?', path.stem)[1]]
    direct = weights.first_direct()
    assert init_cfg['type'] == 'Pretrained'
    assert init_cfg['checkpoint'] == (direct.location if direct else f'checkpoints/{weights.local_name}')

    if scope == 'mmdet':
        epochs, milestones = (36, [27, 33]) if path.stem.endswith('_3x') else (12, [8, 11])
        assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
        assert cfg.train_cfg.max_epochs == epochs
        step = _scheduler(cfg, 'MultiStepLR')
        assert step['milestones'] == milestones and step['end'] == epochs and step['gamma'] == 0.1
        warmup = _scheduler(cfg, 'LinearLR')
        assert (warmup['start_factor'], warmup['end'], warmup['by_epoch']) == (0.001, 500, False)
        assert cfg.val_evaluator.type == 'CocoMetric' and set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    else:
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_cfg.val_interval == 16000
        warmup = _scheduler(cfg, 'LinearLR')
        assert (warmup['start_factor'], warmup['end'], warmup['by_epoch']) == (1e-6, 1500, False)
        poly = _scheduler(cfg, 'PolyLR')
        assert (poly['power'], poly['eta_min'], poly['begin'], poly['end']) == (1.0, 0.0, 1500, 160000)
        crops = [t['crop_size'] for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'RandomCrop']
        assert crops == [(512, 512)]
        assert tuple(cfg.model.data_preprocessor.size) == (512, 512)
        assert cfg.val_evaluator.type == 'IoUMetric' and list(cfg.val_evaluator.iou_metrics) == ['mIoU']

    if path.stem in DROP_PATH:
        assert cfg.model.backbone.drop_path_rate == DROP_PATH[path.stem]
    if family == 'SwinTransformer' and scope == 'mmdet':
        _check_swin_ms_crop(cfg.train_dataloader.dataset.pipeline)


@pytest.mark.parametrize('path', RECIPE_CONFIGS, ids=_id)
def test_optimizer_recipe(path: Path):
    cfg = Config.fromfile(str(path))
    scope = _task(path)
    family = _backbone_class(cfg)
    recipes = vt_backbones.MODELS.get(family).recipes
    recipe = recipes.get(f'{scope}_3x' if path.stem.endswith('_3x') else scope, recipes.get(scope))
    assert recipe is not None, f'{family}.recipes has no {scope!r} recipe'
    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW'
    assert optimizer.lr == recipe.lr
    assert tuple(optimizer.betas) == recipe.betas
    assert optimizer.weight_decay == recipe.weight_decay
    custom_keys = cfg.optim_wrapper.get('paramwise_cfg', {}).get('custom_keys', {})
    if not recipe.no_decay:  # weight decay on every parameter
        assert all(v.get('decay_mult', 1.0) != 0.0 for v in custom_keys.values())
    for key in recipe.no_decay:
        assert custom_keys[key]['decay_mult'] == 0.0, key


def _check_swin_ms_crop(pipeline: list) -> None:
    """Flip, then one of: resize 480..800 (step 32) x 1333, or resize 400/500/600 + absolute 384-600 crop + resize."""
    multi = [(s, 1333) for s in range(480, 801, 32)]
    types = [t['type'] for t in pipeline]
    assert types.index('RandomFlip') < types.index('RandomChoice')
    plain, cropped = pipeline[types.index('RandomChoice')]['transforms']
    assert [t['type'] for t in plain] == ['RandomChoiceResize']
    assert [tuple(s) for s in plain[0]['scales']] == multi
    assert [t['type'] for t in cropped] == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    assert [tuple(s) for s in cropped[0]['scales']] == [(400, 1333), (500, 1333), (600, 1333)]
    assert cropped[1]['crop_type'] == 'absolute_range' and tuple(cropped[1]['crop_size']) == (384, 600)
    assert [tuple(s) for s in cropped[2]['scales']] == multi


@pytest.mark.parametrize('name', ['maskrcnn_swin_t', 'upernet_swin_t'])
def test_no_weight_decay_param_groups(name: str):
    """mmengine's paramwise_cfg puts exactly the backbone norms and bias tables in zero-decay groups."""
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    model = _build(cfg)
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay = cfg.optim_wrapper.optimizer.weight_decay
    lr = cfg.optim_wrapper.optimizer.lr
    assert decay > 0

    group_of = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in group_of, 'a parameter is in two groups'
            group_of[id(param)] = group
    assert len(group_of) == sum(1 for p in model.parameters() if p.requires_grad)

    names = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    no_decay = [n for n in names if 'norm' in n or 'relative_position_bias_table' in n]
    assert any('relative_position_bias_table' in n for n in no_decay)
    assert any('patch_embed.norm' in n for n in no_decay) and any('downsample.norm' in n for n in no_decay)
    assert all(any(f'norm{i}.' in n for n in no_decay) for i in range(4))
    for n, p in model.backbone.named_parameters():
        if not p.requires_grad:
            continue
        group = group_of[id(p)]
        assert group['lr'] == lr, n
        expected = 0.0 if n in no_decay else decay
        assert group['weight_decay'] == expected, f'{n}: weight_decay {group["weight_decay"]}, expected {expected}'

"""Our backbones inside mmdet's Mask R-CNN and mmseg's UperNet: registry, one training step, inference; and in
mmseg's own shipped configs with only the backbone replaced (mmseg passes ``model.pretrained`` to it)."""
from __future__ import annotations

import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import vt_backbones

# The smallest variant of each family (SMALLEST) goes through a real detector and segmentor.
from conftest import REFERENCE, ROOT, SMALLEST
from test_convert import fake_official


def load_config(name: str) -> Config:
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', name))
    cfg.model.backbone.init_cfg = None  # no pretrained file in tests
    cfg.model.backbone.drop_path_rate = 0.0  # a dropped branch gets no gradient: keep the step deterministic
    return cfg


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_backbone_builds_through_downstream_registries(scope):
    registry = pytest.importorskip(f'{scope}.registry').MODELS
    init_default_scope(scope)
    backbone = registry.build(dict(type='vt_backbones.SwinTransformer', arch='tiny', out_indices=(1, 2, 3)))
    assert isinstance(backbone, vt_backbones.SwinTransformer)
    assert backbone.out_channels == (192, 384, 768)


def train_step_and_predict(model: torch.nn.Module, cfg: Config, data: dict) -> dict:
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    model.train()
    before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    log_vars = model.train_step(data, optim_wrapper)
    assert torch.isfinite(log_vars['loss'])
    changed = [n for n, p in model.backbone.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before), f'not updated by one AdamW step: {sorted(set(before) - set(changed))}'
    model.eval()
    with torch.no_grad():
        return model.test_step(data)


def segmentation_step(model: torch.nn.Module, cfg: Config, size: tuple[int, int], num_classes: int) -> list:
    """`train_step_and_predict` on two random images of ``size`` with random labels; the prediction has their size."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    H, W = size
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, H, W)))
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 256, (3, H, W), dtype=torch.uint8) for _ in range(2)], data_samples=samples)
    results = train_step_and_predict(model, cfg, data)
    assert results[0].pred_sem_seg.data.shape == (1, H, W)
    return results


@pytest.mark.parametrize('name', SMALLEST)
def test_mask_rcnn_train_step_and_inference(name):
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    cfg = load_config(f'maskrcnn_{name}.py')
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, vt_backbones.family_of(name))
    packed = demo_mm_inputs(2, [[3, 160, 224], [3, 128, 192]], num_items=[3, 2], num_classes=80, with_mask=True)
    results = train_step_and_predict(model, cfg, packed)
    assert len(results) == 2
    assert {'bboxes', 'scores', 'labels', 'masks'} <= set(results[0].pred_instances.keys())


@pytest.mark.parametrize('name', SMALLEST)
def test_upernet_train_step_and_inference(name):
    pytest.importorskip('mmseg')
    from mmseg.registry import MODELS

    cfg = load_config(f'upernet_{name}.py')
    # The heads' 512 channels cost ~10x the backbone's step on CPU and test nothing of ours: narrow them.
    cfg.model.decode_head.channels = cfg.model.auxiliary_head.channels = 32
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, vt_backbones.family_of(name))
    segmentation_step(model, cfg, (128, 160), num_classes=150)


# mmseg's own configs (installed with the package), as a user takes them: only model.backbone is replaced.
MMSEG_CONFIGS = {'upernet': 'upernet/upernet_r50_4xb2-40k_cityscapes-512x1024.py',
                 'fpn': 'sem_fpn/fpn_r50_4xb2-80k_cityscapes-512x1024.py'}


def pretrained_file(name: str, directory) -> tuple[str, dict[str, torch.Tensor]]:
    """A checkpoint file of the family for ``pretrained=``, and its weights: the official keys and shapes with
    random values, or our own layout where no official checkpoint exists (GG)."""
    if os.path.isfile(os.path.join(REFERENCE, 'ckpt_keys', f'{name}.json')):
        weights = fake_official(name, seed=5)
    else:
        weights = {k: torch.randn(v.shape) for k, v in vt_backbones.create_backbone(name).state_dict().items()}
    # Small values, as trained weights have: unit-variance weights in every layer overflow to inf/NaN in deep
    # BatchNorm stacks (Shuffle), which would say nothing about loading.
    weights = {k: v * 0.05 if v.is_floating_point() else v for k, v in weights.items()}
    for key in [k for k in weights if k.endswith('running_var')]:  # BatchNorm (Shuffle): positive
        weights[key] = weights[key].abs() + 0.5
    path = str(directory / f'{name}.pth')
    torch.save({'model': weights}, path)
    return path, weights


@pytest.mark.parametrize('head', sorted(MMSEG_CONFIGS))
@pytest.mark.parametrize('name', SMALLEST)
def test_mmseg_shipped_cityscapes_config_with_only_the_backbone_replaced(name, head, tmp_path, recwarn):
    """mmseg's EncoderDecoder hands its ``model.pretrained`` to our backbone. UperNet: a path of the family's
    checkpoint warns (deprecated) and loads through our converter; FPN: ``None`` (set by hand, as the ResNet file
    of the config cannot fit) is silent. Then the segmentor trains a step (every backbone parameter updated) and
    predicts. A tiny crop keeps it cheap."""
    mmseg = pytest.importorskip('mmseg')
    from mmseg.registry import MODELS

    cfg = Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs', MMSEG_CONFIGS[head]))
    family = vt_backbones.family_of(name)
    cfg.model.backbone = dict(type=f'vt_backbones.{family.__name__}', arch=family.variants[name], drop_path_rate=0.0)
    with torch.device('meta'):
        channels = list(vt_backbones.create_backbone(name).num_features)
    if head == 'upernet':
        cfg.model.decode_head.in_channels = channels
        cfg.model.auxiliary_head.in_channels = channels[cfg.model.auxiliary_head.in_index]
    else:
        cfg.model.neck.in_channels = channels
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'  # what mmseg's config gives its ResNet
    H, W = 64, 96
    cfg.model.data_preprocessor.size = (H, W)
    init_default_scope('mmseg')
    if head == 'upernet':
        path, weights = pretrained_file(name, tmp_path)
        cfg.model.pretrained = path
        with pytest.warns(FutureWarning, match='pretrained is deprecated'):
            model = MODELS.build(cfg.model)
        assert model.backbone.init_cfg == dict(type='Pretrained', checkpoint=path)
        model.init_weights()
        loaded = model.backbone.state_dict()
        kept = [k for k in weights if k in loaded]  # official names we keep (CoaT renames most of its keys)
        assert kept and all(torch.equal(loaded[k], weights[k]) for k in kept)
    else:
        cfg.model.pretrained = None
        model = MODELS.build(cfg.model)
        assert model.backbone.init_cfg is None
        assert not [w for w in recwarn.list if 'pretrained' in str(w.message)]
        model.init_weights()
    assert isinstance(model.backbone, family)

    results = segmentation_step(model, cfg, (H, W), num_classes=19)
    assert torch.isfinite(results[0].seg_logits.data).all()


@pytest.mark.slow
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_whole_model_compile_of_single_stage_detector_and_upernet(scope):
    """What mmengine's ``compile=True`` compiles, on a whole model holding our backbone: mmdet's shipped RetinaNet
    config (a single-stage detector) and our UperNet config, Swin-T of reduced depth, training mode, the tensor
    forward under torch.compile's defaults with a counting backend: no graph break, `MAX_COMPILES` compiles over
    `WHOLE_MODEL_SIZES`, at the first sizes."""
    package = pytest.importorskip(scope)
    from test_fastpath import MAX_COMPILES, count_whole_model_compiles
    family = vt_backbones.family_of('swin_t')
    backbone = dict(type='vt_backbones.SwinTransformer', arch=family.reduced_arch(family.variants['swin_t']),
                    drop_path_rate=0.0)
    if scope == 'mmdet':
        cfg = Config.fromfile(os.path.join(os.path.dirname(package.__file__), '.mim', 'configs', 'retinanet',
                                           'retinanet_r50_fpn_1x_coco.py'))
        cfg.model.backbone = backbone
        cfg.model.neck.in_channels = [96, 192, 384, 768]
    else:
        cfg = load_config('upernet_swin_t.py')
        cfg.model.backbone = backbone
        cfg.model.decode_head.channels = cfg.model.auxiliary_head.channels = 32  # the heads cost, not ours
    init_default_scope(scope)
    model = pytest.importorskip(f'{scope}.registry').MODELS.build(cfg.model).train()
    # Batch 2: UperNet's pyramid pooling has a 1x1 map, which BatchNorm cannot normalise in training with batch 1.
    per_size = count_whole_model_compiles(model, batch=2, mode='tensor')
    assert per_size == [1] * MAX_COMPILES + [0] * (len(per_size) - MAX_COMPILES), \
        f'{scope}: graphs per size {per_size}'

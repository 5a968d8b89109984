"""Our backbones inside mmdet's Mask R-CNN and mmseg's UperNet: registry, one training step, inference."""
from __future__ import annotations

import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import vt_backbones

from conftest import ROOT

# The smallest variant of each family goes through a real detector and segmentor.
SMALLEST = ['swin_t', 'twins_svt_s', 'gg_t', 'crossformer_t', 'focal_t', 'coat_lite_tiny', 'shuffle_t']


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
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = load_config(f'upernet_{name}.py')
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, vt_backbones.family_of(name))
    H, W = 128, 160
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, H, W)))
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 256, (3, H, W), dtype=torch.uint8) for _ in range(2)], data_samples=samples)
    results = train_step_and_predict(model, cfg, data)
    assert results[0].pred_sem_seg.data.shape == (1, H, W)

"""Shuffle Transformer specifics: drop-path schedule, BatchNorm never sees padding, SyncBN configs, errors.

The comparison with the official code (same weights -> same stage outputs at 224x224) needs the official
model and is reported in the family's closing note, not run here.
"""
from __future__ import annotations

import copy
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

import vt_backbones
from vt_backbones import ShuffleTransformer, layers

from conftest import ROOT, fill_padding_with

# Small enough for fast tests, with the real structure (pairs of blocks, merging, head dim 32).
TINY = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


def test_drop_path_constant_within_a_stage_linear_across_stages():
    with torch.device('meta'):  # structure only
        model = vt_backbones.create_backbone('shuffle_s', drop_path_rate=0.3)
    for i in range(4):
        rates = [m.drop_prob for m in model.stage(i).modules() if isinstance(m, layers.DropPath)]
        assert len(rates) == model.arch['depths'][i], i  # one per block
        assert rates == pytest.approx([0.3 * i / 3] * len(rates)), (i, rates)


def test_plain_and_shuffled_windows():
    """The shuffled grid strides over the padded map; at a window multiple it is the official spatial shuffle."""
    stage = ShuffleTransformer(TINY).stage(0)
    plain, shuffled = stage.grids(56, 56, None)
    assert plain.mask is None and shuffled.mask is None
    # Window 0 of the shuffled grid: rows and columns 0, 8, ..., 48 (the official '(ws1 hh) (ws2 ww)' split).
    rows, cols = shuffled.partition_index[:49].div(56, rounding_mode='floor'), shuffled.partition_index[:49] % 56
    assert sorted(set(rows.tolist())) == sorted(set(cols.tolist())) == list(range(0, 56, 8))
    plain, shuffled = stage.grids(25, 33, None)  # padded to 28 x 35: strides 4 and 5
    assert (shuffled.padded_height, shuffled.padded_width) == (28, 35) and shuffled.num_windows == 20
    assert shuffled.mask is not None


def test_batchnorm_never_sees_padding(monkeypatch):
    """Training mode at a size that needs padding in every stage: filling the attention padding with 1000 moves
    neither an output nor any BatchNorm running statistic."""
    model = ShuffleTransformer(TINY).train()
    x = torch.randn(2, 3, 97, 131)
    state = copy.deepcopy(model.state_dict())
    reference = model(x)
    reference_stats = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    model.load_state_dict(state)
    fill_padding_with(monkeypatch, 1000.0)
    padded = model(x)
    for ref, out in zip(reference, padded):
        torch.testing.assert_close(out, ref)
    for key, value in model.state_dict().items():
        if 'running' in key:
            torch.testing.assert_close(value, reference_stats[key], msg=key)


def test_syncbn_norm_cfg_builds_batchnorms_that_norm_eval_freezes():
    bn = ShuffleTransformer(TINY).eval()
    sync = ShuffleTransformer(TINY, norm_cfg=dict(type='SyncBN', requires_grad=True), norm_eval=True)
    sync.load_state_dict(bn.state_dict())
    norms = [m for m in sync.modules() if isinstance(m, _BatchNorm)]
    assert len(norms) == 2 + 4 * 2 * 3 + 3  # stem, 3 per block, 3 patch mergings
    sync.train()
    assert not any(m.training for m in norms)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(bn(x), sync(x)):
            torch.testing.assert_close(a, b)


def test_frozen_norms_with_requires_grad_false():
    model = ShuffleTransformer(TINY, norm_cfg=dict(type='BN', requires_grad=False))
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            assert not module.weight.requires_grad and not module.bias.requires_grad


@pytest.mark.parametrize('kwargs, message', [
    (dict(window_size=6), r'window_size must be an odd positive int'),
    (dict(norm_cfg='BN'), r"norm_cfg must be a dict with a 'type'"),
    (dict(arch=dict(TINY, depths=(2, 3, 2, 2))), r"arch\['depths'\] must be 4 even positive ints"),
    (dict(arch=dict(TINY, num_heads=(3, 2, 4, 8))), r"arch\['num_heads'\] must be 4 ints dividing"),
])
def test_clear_errors(kwargs, message):
    kwargs.setdefault('arch', TINY)
    with pytest.raises(ValueError, match=message):
        ShuffleTransformer(**kwargs)


def test_detection_config_keeps_every_backbone_norm_and_bias_table_out_of_weight_decay():
    pytest.importorskip('mmdet')
    from mmdet.registry import MODELS
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'maskrcnn_shuffle_t.py'))
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    with torch.device('meta'):  # structure only
        model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay_of = {id(p): group['weight_decay'] for group in wrapper.optimizer.param_groups for p in group['params']}
    norm_params = {id(p) for m in model.backbone.modules() if isinstance(m, _BatchNorm) for p in m.parameters()}
    for name, param in model.backbone.named_parameters():
        no_decay = id(param) in norm_params or 'relative_position_bias_table' in name
        assert decay_of[id(param)] == (0.0 if no_decay else 0.05), name

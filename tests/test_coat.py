"""CoaT specifics: shared modules held once (state_dict, optimizer groups), the copy check and the timm and
official-dense layouts of the converter, and the cross-scale resampling at sizes that are not multiples.

The contract and the official-layout conversion are checked for every variant by test_contract.py and
test_convert.py. (Equality with the official code at 224x224 was checked outside the repo, see the README.)
"""
from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F

import vt_backbones
from vt_backbones.convert import ConversionError, convert_state_dict
from vt_backbones.models.coat import resample, shared_copies

from test_convert import fake_official


def test_shared_modules_are_held_once():
    model = vt_backbones.create_backbone('coat_tiny')
    state = model.state_dict()
    pointers = [t.data_ptr() for t in state.values() if t.numel()]
    assert len(pointers) == len(set(pointers)), 'a tensor appears under two state_dict keys'
    assert len(list(model.parameters())) == len(list(model.named_parameters())) == len(
        [k for k in state if not k.endswith('num_batches_tracked')])
    # One CPE / CRPE per stage and one MLP per parallel block; nothing in the blocks.
    assert not any(k for k in state if '.blocks.' in k and ('cpe' in k or 'crpe' in k))
    assert sum(1 for k in state if k.endswith('.mlp.fc1.weight') and k.startswith('parallel_blocks.')) == 6


def test_optimizer_groups_with_no_decay_exclusions():
    """The official configs gave up on paramwise_cfg (shared parameters landed in several groups)."""
    from mmengine.optim import build_optim_wrapper

    model = vt_backbones.create_backbone('coat_small')
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
               paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in ('cls_token', 'cpe', 'crpe', 'norm')}))
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg))
    group_of = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in group_of, 'a parameter is in two groups'
            group_of[id(param)] = group
    assert len(group_of) == len(list(model.parameters()))
    no_decay = ('cls_token', '.cpe.', '.crpe.', 'norm')
    for name, param in model.named_parameters():
        expected = 0.0 if any(k in name for k in no_decay) else 0.05
        assert group_of[id(param)]['weight_decay'] == expected, name
    zero = {n for n, p in model.named_parameters() if group_of[id(p)]['weight_decay'] == 0}
    for example in ('stages.1.cls_token', 'stages.1.cpe.proj.weight', 'stages.1.crpe.conv_list.2.weight',
                    'patch_embed2.norm.weight', 'stages.1.blocks.0.norm1.weight', 'parallel_blocks.5.attn_norms.2.bias',
                    'parallel_blocks.5.mlp_norms.0.weight'):
        assert example in zero, example


def test_differing_copies_of_a_shared_module_are_named():
    source = fake_official('coat_mini')
    copies = shared_copies(source)
    assert len(copies) == (2 * 4) * 2 * 4 + 6 * 3 * 6 + 6 * 2 * 4  # serial cpe+crpe, parallel crpe, mlp3/mlp4
    key = 'parallel_blocks.2.factoratt_crpe3.crpe.conv_list.1.weight'
    source[key] = source[key] + 1
    with pytest.raises(ConversionError, match=re.escape(f'{key} != crpe3.conv_list.1.weight')):
        convert_state_dict(source, model_name='coat_mini')


@pytest.mark.parametrize('variant', ['coat_lite_mini', 'coat_mini'])
def test_timm_and_official_dense_layouts_convert_like_official(variant):
    official = fake_official(variant)
    expected, report = convert_state_dict(dict(official))
    assert report.source_format == 'official'
    assert report.dropped['serial_blocks2.1.cpe.proj.weight'].startswith('copy of a shared module')
    # timm drops the unused norms: norm1 always, norm2/norm3 for CoaT-Lite (no aggregate there either).
    unused = ('norm1.',) + (('norm2.', 'norm3.') if 'lite' in variant else ())
    timm = {k: v for k, v in official.items() if not k.startswith(unused)}
    # The official dense (mmdet) checkpoints: a whole detector, backbone without the classification parts.
    dense = {f'backbone.{k}': v for k, v in official.items() if not k.startswith(('norm', 'head', 'aggregate'))}
    dense['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    for layout, source in (('timm', timm), ('official', dense)):
        converted, report = convert_state_dict(source)
        assert report.source_format == layout and report.model == variant
        assert converted.keys() == expected.keys()
        assert all(torch.equal(converted[k], expected[k]) for k in expected)


@pytest.mark.parametrize('size', [(28, 28), (7, 7)])
def test_resample_matches_official_interpolation_on_multiples(size):
    """Sizes of a 224 input: the official ``F.interpolate(scale_factor=2**s)`` exactly."""
    B, C = 2, 5
    H, W = size
    x = torch.randn(B, 1 + H * W, C)
    for scale in (-2, -1, 1, 2):
        target = (int(H * 2.0 ** scale), int(W * 2.0 ** scale))
        if min(target) < 1:
            continue
        image = x[:, 1:].transpose(1, 2).reshape(B, C, H, W)
        expected = F.interpolate(image, scale_factor=2.0 ** scale, mode='bilinear').flatten(2).transpose(1, 2)
        out = resample(x, size, target, scale)
        torch.testing.assert_close(out[:, 1:], expected)
        torch.testing.assert_close(out[:, :1], x[:, :1])  # class token passes as it is


def test_resample_beyond_the_map_reads_the_border():
    """13 stride-8 rows -> 4 stride-32 rows: the last output row samples rows 13-14, past the map (row 12 last)."""
    x = torch.randn(1, 1 + 13 * 17, 3)
    out = resample(x, (13, 17), (4, 5), -2)
    image = x[:, 1:].transpose(1, 2).reshape(1, 3, 13, 17)
    padded = F.pad(image, (0, 3, 0, 3), mode='replicate')
    expected = F.interpolate(padded, scale_factor=0.25, mode='bilinear').flatten(2).transpose(1, 2)
    torch.testing.assert_close(out[:, 1:], expected)
    torch.testing.assert_close(out[:, 1:].reshape(1, 4, 5, 3)[0, 3, 4], image[0, :, 12, 16])  # corner: one real token
    up = resample(torch.randn(1, 1 + 4 * 5, 3), (4, 5), (13, 17), 2)
    assert up.shape == (1, 1 + 13 * 17, 3)


def test_parallel_arch_needs_equal_dims():
    with pytest.raises(ValueError, match=r'embed_dims\[1:\] and mlp_ratios\[1:\] must be equal'):
        vt_backbones.CoaT(arch=dict(embed_dims=(64, 128, 320, 512), serial_depths=(1, 1, 1, 1), parallel_depth=1,
                                    num_heads=8, mlp_ratios=(4, 4, 4, 4)))
    with pytest.raises(ValueError, match='crpe_windows must split the 8 heads'):
        vt_backbones.create_backbone('coat_lite_tiny', crpe_windows={3: 2, 5: 2})


def test_init_cfg_pretrained_loads_an_official_file(tmp_path):
    source = fake_official('coat_lite_tiny', seed=5)
    path = tmp_path / 'coat_lite_tiny_e88e96b0.pth'
    torch.save({'model': source}, path)
    model = vt_backbones.create_backbone('coat_lite_tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    state = model.state_dict()
    for ours, official in (('stages.0.cls_token', 'cls_token1'), ('stages.2.cpe.proj.weight', 'cpe3.proj.weight'),
                           ('stages.3.crpe.conv_list.2.bias', 'crpe4.conv_list.2.bias'),
                           ('stages.1.blocks.1.attn.qkv.weight', 'serial_blocks2.1.factoratt_crpe.qkv.weight'),
                           ('patch_embed4.norm.bias', 'patch_embed4.norm.bias')):
        assert torch.equal(state[ours], source[official]), ours

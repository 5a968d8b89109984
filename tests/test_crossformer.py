"""CrossFormer specifics: the two LDA groupings, the small-map rule without state, the dynamic position bias
and the official checkpoint layouts."""
from __future__ import annotations

import copy

import pytest
import torch

import vt_backbones
from vt_backbones.convert import convert_state_dict, unwrap
from vt_backbones.layers import relative_position_index
from vt_backbones.models.crossformer import CrossFormer, relative_offsets

from test_convert import fake_official


def build(**kw) -> CrossFormer:
    kw.setdefault('drop_path_rate', 0.0)
    return vt_backbones.create_backbone('crossformer_t', **kw).eval()


@pytest.fixture(scope='module')
def model() -> CrossFormer:
    return build()


def test_lda_modes_coincide_at_224_and_differ_beyond(model):
    interval = model
    group = build(lda_mode='fixed_group')
    group.load_state_dict(interval.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 3, 224, 224)
        for a, b in zip(interval(x), group(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        # 256x256: stage 3 (T's first with an LDA block) is 16x16, LDA groups of 8x8 (fixed interval 2) vs
        # 7x7 at stride 2 (padded to 28x28).
        x = torch.randn(1, 3, 256, 256)
        assert not torch.allclose(interval(x)[2], group(x)[2])


@pytest.mark.parametrize('lda_mode, size, stage, expected', [
    # (H, W) of the stage map -> (group shape, dilation, padded size) of the LDA blocks
    ('fixed_interval', (200, 336), 0, ((25, 42), 8, (200, 336))),  # 800x1344: groups grow with the image
    ('fixed_interval', (25, 33), 0, ((4, 5), 8, (32, 40))),  # padded to a multiple of I only
    ('fixed_interval', (25, 42), 3, ((25, 42), 1, (25, 42))),  # I = 1: global attention in stage 4
    ('fixed_group', (200, 336), 0, ((7, 7), 8, (224, 336))),  # padded to a multiple of G * I
    ('fixed_group', (9, 12), 2, ((7, 7), 2, (14, 14))),
    ('fixed_interval', (7, 10), 3, ((7, 7), 1, (7, 14))),  # min(H, W) <= G: SDA over min(H, W) groups
    ('fixed_group', (5, 9), 1, ((5, 5), 1, (5, 10))),
])
def test_lda_grouping(lda_mode, size, stage, expected):
    with torch.device('meta'):
        model = CrossFormer('tiny', lda_mode=lda_mode)
    grid = model.layers[stage].grid(*size, long_distance=True, device=torch.device('cpu'))
    window, dilation, padded = expected
    assert grid.window == window
    assert (grid.padded_height, grid.padded_width) == padded
    # The first group holds tokens every `dilation` rows/columns from the top-left corner.
    first = grid.partition_index[:window[0] * window[1]].view(window)
    assert first[0, 1] == dilation and first[1, 0] == dilation * size[1]  # an index into the unpadded map


def test_small_input_never_changes_a_block_for_later_inputs(model):
    model = copy.deepcopy(model)
    fresh = copy.deepcopy(model)
    modes = [block.long_distance for stage in model.layers for block in stage.blocks]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 96))  # stages 2-4 are no larger than a group: SDA for this call
        for a, b in zip(model(x), fresh(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert modes == [block.long_distance for stage in model.layers for block in stage.blocks]
    assert any(modes)


@pytest.mark.parametrize('group', [(7, 7), (4, 6)])
def test_position_bias_offsets_follow_the_index(group):
    """Row ``index[q, k]`` of the offsets table holds ``position(q) - position(k)``, as the official bias set."""
    gh, gw = group
    offsets, index = relative_offsets(gh, gw), relative_position_index(gh, gw)
    coords = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing='ij'), -1).view(-1, 2)
    assert offsets.shape == ((2 * gh - 1) * (2 * gw - 1), 2)
    torch.testing.assert_close(offsets[index], (coords[:, None] - coords[None, :]).float())


def test_dynamic_position_bias_width_is_dim_over_16(model):
    for stage, dim in zip(model.layers, model.num_features):
        assert stage.blocks[0].attn.pos.pos_proj.out_features == dim // 16


def test_converter_drops_buffers_and_accepts_detector_checkpoints(model):
    source = fake_official('crossformer_t')
    ours, report = convert_state_dict(dict(source))
    assert report.model == 'crossformer_t'
    dropped = set(report.dropped)
    assert {'head.weight', 'head.bias', 'norm.weight', 'norm.bias'} <= dropped
    assert 'layers.0.blocks.0.attn.biases' in dropped and 'layers.3.blocks.5.attn.relative_position_index' in dropped
    assert not any(k.endswith(('.biases', 'relative_position_index')) for k in ours)
    detector = {'state_dict': {f'module.backbone.{k}': v for k, v in source.items()}}
    detector['state_dict']['module.neck.fpn_convs.0.conv.weight'] = torch.zeros(1)
    raw, wrapper = unwrap(detector)
    wrapped, _ = convert_state_dict(raw)
    assert wrapper == 'state_dict' and wrapped.keys() == ours.keys()
    copy.deepcopy(model).load_state_dict(wrapped, strict=True)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"lda_mode must be one of \('fixed_interval', 'fixed_group'\)"):
        CrossFormer('tiny', lda_mode='dilated')
    with pytest.raises(ValueError, match='intervals must be 4 positive ints'):
        CrossFormer('tiny', intervals=(8, 4, 2))
    with pytest.raises(ValueError, match='group_size must be a positive int'):
        CrossFormer('tiny', group_size=0)

"""Focal Transformer specifics: the official rolled neighbour gathering, the per-input expand size at stage 4,
wrapped-neighbour masking, the padding-aware pooling, the "useconv" variants and their conversion.

The contract and the official-layout conversion are checked for every variant by test_contract.py and
test_convert.py; the equality with the official code at 224x224 is in the closing note of the issue (the
official code cannot be vendored here).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

import vt_backbones
from vt_backbones.convert import ConversionError, convert_state_dict
from vt_backbones.models import focal
from vt_backbones.models.focal import FocalTransformer, focal_layout, neighbour_offsets

from test_convert import fake_official

TINY = dict(embed_dims=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))


def small(**kw) -> FocalTransformer:
    torch.manual_seed(0)
    return FocalTransformer(arch=TINY, drop_path_rate=0.0, **kw).eval()


def rolled_neighbours(height: int, width: int, window: int, expand: int) -> torch.Tensor:
    """Oracle: the official gathering, ``torch.roll`` of a map of token ids by (-e, -e), (-e, e), (e, -e),
    (e, e), windows cut from each, keeping the tokens outside the window; ``[nW, 4 * 33]`` token ids."""
    ids = torch.arange(height * width).view(height, width)
    keep = {  # per roll, the tokens of the displaced window not in the window itself
        (-expand, -expand): torch.ones(window, window, dtype=torch.bool),
        (-expand, expand): torch.ones(window, window, dtype=torch.bool),
        (expand, -expand): torch.ones(window, window, dtype=torch.bool),
        (expand, expand): torch.ones(window, window, dtype=torch.bool),
    }
    keep[(-expand, -expand)][:-expand, :-expand] = False
    keep[(-expand, expand)][:-expand, expand:] = False
    keep[(expand, -expand)][expand:, :-expand] = False
    keep[(expand, expand)][expand:, expand:] = False
    per_roll = []
    for shifts, valid in keep.items():
        rolled = torch.roll(ids, shifts=shifts, dims=(0, 1))
        windows = rolled.view(height // window, window, width // window, window).permute(0, 2, 1, 3)
        per_roll.append(windows.reshape(-1, window * window)[:, valid.view(-1)])
    return torch.cat(per_roll, dim=1)


@pytest.mark.parametrize('size', [(14, 14), (21, 28), (14, 35)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_neighbours_are_the_official_rolled_tokens(size):
    H, W = size
    assert len(neighbour_offsets(7, 3)[0]) == 4 * (49 - 16) == 132
    layout = focal_layout(H, W, 7, 3, 3, False)
    local = layout.local_index.view(layout.grid.num_windows, -1)
    own, neighbours = local[:, :49], local[:, 49:]
    assert torch.equal(own, layout.grid.partition_index.view(-1, 49))
    assert torch.equal(neighbours, rolled_neighbours(H, W, 7, 3))
    assert layout.key_mask[:, :49 + 132].all()  # no padding: only pooled windows masked


@pytest.mark.parametrize('size, no_neighbours', [((7, 7), True), ((7, 12), True), ((12, 7), True), ((8, 8), False),
                                                  ((4, 5), False)], ids=str)
def test_neighbours_masked_where_the_shorter_side_is_the_window(size, no_neighbours):
    """The official code: no neighbours where min(H, W) <= window; with the 7x7 tables only == 7 applies (a
    smaller map keeps the 7x7 window, padded and masked). Masked, so that one graph serves every size."""
    layout = focal_layout(*size, 7, 3, 1, False)
    neighbours = layout.key_mask[:, 49:49 + 132]
    assert bool((~neighbours).all()) == no_neighbours
    assert layout.key_mask[:, :1].all()  # a query always keeps a real key: its window's first token


def test_stage4_neighbour_table_unused_at_224_used_at_dense_sizes():
    model = small()
    x224, x256 = torch.randn(1, 3, 224, 224), torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        before = model(x224)[3], model(x256)[3]
        model.layers[3].blocks[0].attn.relative_position_bias_table_to_neighbors.add_(1.0)
        after = model(x224)[3], model(x256)[3]
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert not torch.allclose(after[1], before[1])


def test_mask_wrapped_masks_exactly_the_wrapped_neighbours():
    default, masked = focal_layout(14, 21, 7, 3, 3, False), focal_layout(14, 21, 7, 3, 3, True)
    assert default.key_mask is not None  # pooled windows outside the 2x3 map
    assert default.key_mask[:, :49 + 132].all()
    local = ~masked.key_mask[:, :49 + 132]
    dr = torch.tensor(neighbour_offsets(7, 3)[0])
    assert torch.equal(local[1, 49:], dr < 0)  # window (0, 1): the rows above come from the map's bottom
    assert torch.equal(local[4, 49:], dr >= 7)  # window (1, 1): the rows below come from the map's top
    assert not local[:, :49].any()


def test_mask_wrapped_changes_outputs():
    x = torch.randn(1, 3, 256, 256)
    a, b = small(), small(mask_wrapped=True)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert not torch.allclose(a(x)[0], b(x)[0])


@pytest.mark.parametrize('mask_wrapped', [False, True])
def test_keys_the_mask_hides_are_never_read(mask_wrapped, monkeypatch):
    """At a size padded in every stage, every local key the layout masks (padding, which reads a wrapped-around
    real token, and with mask_wrapped the wrapped neighbours) is made to read another token: no output moves."""
    model, x = small(mask_wrapped=mask_wrapped), torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        reference = model(x)

        def layout_reading_other_tokens(*args, **kwargs):
            layout = focal_layout(*args, **kwargs)
            hidden = ~layout.key_mask[:, :layout.local_index.numel() // layout.grid.num_windows].reshape(-1)
            assert hidden.any()
            other = (layout.local_index + 1) % (layout.grid.height * layout.grid.width)
            return dataclasses.replace(layout, local_index=torch.where(hidden, other, layout.local_index))
        monkeypatch.setattr(focal, 'focal_layout', layout_reading_other_tokens)
        moved = model(x)
    for ref, out in zip(reference, moved):
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_pooling_is_the_mean_of_real_tokens_at_init():
    model = small()
    block = model.layers[0].blocks[0]
    x = torch.randn(2, 10, 9, 32)  # windows of 7x7, 7x2, 3x7 and 3x2 real tokens
    layout = focal_layout(10, 9, 7, 3, 7, False)
    pooled = block.pool_windows(x, layout)
    expected = torch.stack([x[:, :7, :7].mean((1, 2)), x[:, :7, 7:].mean((1, 2)),
                            x[:, 7:, :7].mean((1, 2)), x[:, 7:, 7:].mean((1, 2))], dim=1)
    torch.testing.assert_close(pooled, expected)


@pytest.mark.parametrize('size', [(224, 224), (97, 131)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_useconv_shapes(size):
    model = small(use_conv_embed=True)
    assert model.patch_embed.proj.kernel_size == (7, 7)
    assert model.layers[0].downsample.proj.kernel_size == (3, 3)
    H, W = size
    with torch.no_grad():
        outs = model(torch.randn(1, 3, H, W))
    for i, out in enumerate(outs):
        s = 4 * 2 ** i
        assert out.shape[2:] == (-(-H // s), -(-W // s))


def _useconv_checkpoint() -> dict[str, torch.Tensor]:
    sd = fake_official('focal_t')
    sd['patch_embed.proj.weight'] = torch.randn(96, 3, 7, 7)
    for i, c in enumerate((96, 192, 384)):
        sd[f'layers.{i}.downsample.proj.weight'] = torch.randn(2 * c, c, 3, 3)
    return sd


def test_useconv_checkpoint_detected_and_loaded():
    sd = _useconv_checkpoint()
    with torch.device('meta'):
        model = vt_backbones.create_backbone('focal_t', use_conv_embed=True)
    converted, report = convert_state_dict(sd, model=model)
    assert report.source_format == 'official_useconv'
    assert torch.equal(converted['patch_embed.proj.weight'], sd['patch_embed.proj.weight'])
    # By name (tools/convert_weights.py): the layout's constructor arguments come with it.
    by_name, report = convert_state_dict(sd, model_name='focal_t')
    assert report.model_kwargs == {'use_conv_embed': True} and 'use_conv_embed=True' in report.summary()
    assert by_name.keys() == converted.keys()
    with pytest.raises(ConversionError, match=r'(?s)official checkpoint does not fit.*patch_embed\.proj\.weight'):
        convert_state_dict(fake_official('focal_t'), model=model)  # a 4x4 stem into the useconv model


def test_official_names_are_renamed():
    sd = fake_official('focal_t')
    converted, report = convert_state_dict(sd)
    assert report.model == 'focal_t' and report.source_format == 'official'
    key = 'layers.1.blocks.0.attn.relative_position_bias_table_to_windows'
    assert torch.equal(converted[key], sd[key + '.0'])
    assert torch.equal(converted['layers.2.blocks.3.pool.weight'], sd['layers.2.blocks.3.pool_layers.0.weight'])


def test_every_parameter_gets_a_gradient_where_stage4_side_is_the_window():
    """197x261: stage 4 is 7x9, so the official rule drops its neighbours; their table still takes part (masked
    keys, zero gradient), as DDP with find_unused_parameters=False needs."""
    model = small().train()
    sum(out.sum() for out in model(torch.randn(1, 3, 197, 261))).backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    table = model.layers[3].blocks[0].attn.relative_position_bias_table_to_neighbors
    assert torch.count_nonzero(table.grad) == 0  # masked: the outputs do not depend on it at this size


"""GG-Transformer specifics: GG-MSA against a loop-by-loop transcription of the design description (the paper's
Sec. 3 could not be re-checked, see gg.py), with and without our optional Glance position bias, the parameter
counts from the architecture formula (and the paper's), and the converter for our own checkpoints.

There is no official code or checkpoint; the contract is checked by test_contract.py.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import vt_backbones
from vt_backbones.convert import ConversionError, convert_file, convert_state_dict
from vt_backbones.layers import BlockSettings
from vt_backbones.models.gg import GGStage

from conftest import ROOT

M = 7


def paper_gg_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One GG block written from the design description, loop by loop: ``[B, H, W, C]`` -> same shape.

    The projected map is zero-padded to ``M * ceil(H / M)`` x ``M * ceil(W / M)`` and split: partition
    ``(i, j)`` takes rows ``i::dh`` and columns ``j::dw`` (``dh, dw`` = padded size / M). Glance: attention in
    each partition, padded keys excluded, plus the relative position bias of the ``M x M`` lattice only when
    the block has a table (``glance_pos_bias=True``). Gaze: the partitions' values merged back to the map
    (the inverse of the split), the depth-wise conv, split again and added to each partition's Glance output.
    The sum is merged, cropped and projected; then the MLP.
    """
    attn = block.attn
    B, H, W, C = x.shape
    heads, d = attn.num_heads, C // attn.num_heads
    Hp, Wp = M * math.ceil(H / M), M * math.ceil(W / M)
    dh, dw = Hp // M, Wp // M
    padded = F.pad(attn.qkv(block.norm1(x)), (0, 0, 0, Wp - W, 0, Hp - H))
    real = torch.zeros(Hp, Wp, dtype=torch.bool)
    real[:H, :W] = True
    offsets = [(i, j) for i in range(dh) for j in range(dw)]
    partitions = {(i, j): padded[:, i::dh, j::dw] for i, j in offsets}  # [B, M, M, 3C] each

    values = torch.zeros(B, Hp, Wp, C)  # merge: every partition's values back to their places
    for (i, j), part in partitions.items():
        values[:, i::dh, j::dw] = part[..., 2 * C:]
    gaze_map = F.conv2d(values.permute(0, 3, 1, 2), attn.gaze_conv.weight, attn.gaze_conv.bias,
                        padding=attn.gaze_conv.kernel_size[0] // 2, groups=C).permute(0, 2, 3, 1)

    table = attn.relative_position_bias_table
    bias = 0.0
    if table is not None:
        rows, cols = torch.meshgrid(torch.arange(M), torch.arange(M), indexing='ij')
        dr = rows.flatten()[:, None] - rows.flatten()[None, :]
        dc = cols.flatten()[:, None] - cols.flatten()[None, :]
        bias = table[(dr + M - 1) * (2 * M - 1) + dc + M - 1].permute(2, 0, 1)
    merged = torch.zeros(B, Hp, Wp, C)
    for (i, j), part in partitions.items():
        q, k, v = part.reshape(B, M * M, 3, heads, d).permute(2, 0, 3, 1, 4)  # [B, heads, N, d]
        logits = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        logits = logits.masked_fill(~real[i::dh, j::dw].reshape(-1), float('-inf'))
        glance = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, M, M, C)
        merged[:, i::dh, j::dw] = glance + gaze_map[:, i::dh, j::dw]  # the Gaze output split again, added
    x = x + attn.proj(merged[:, :H, :W])
    return x + block.mlp(block.norm2(x))


def gg_stage(dim: int, glance_pos_bias: bool, mlp_ratio: float = 2.0) -> GGStage:
    return GGStage(dim=dim, depth=1, num_heads=2, window_size=M, gaze_kernel_size=3, glance_pos_bias=glance_pos_bias,
                   settings=BlockSettings(mlp_ratio=mlp_ratio, qkv_bias=True), drop_paths=[0.0],
                   downsample=False).eval()


@pytest.mark.parametrize('glance_pos_bias', [False, True], ids=['default', 'glance_pos_bias'])
@pytest.mark.parametrize('size', [(14, 21), (10, 17), (5, 5), (56, 56)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_gg_msa_matches_the_design_description(size, glance_pos_bias):
    """Exact multiples (dilation 2, 3), padding in both directions, a map smaller than a partition (one
    padded partition), and stage 1 at 224 (dilation 8); without and with the Glance position bias."""
    stage = gg_stage(32, glance_pos_bias)
    assert (stage.blocks[0].attn.relative_position_bias_table is not None) == glance_pos_bias
    for p in stage.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(2, *size, 32)
    with torch.no_grad():
        ours = stage(x, lambda block, *args: block(*args))
        expected = paper_gg_block(stage.blocks[0], x)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


def test_a_token_sees_its_dilated_partition_and_its_3x3_neighbourhood():
    """Glance reaches the tokens of the token's partition, spread over the whole map; Gaze its 3x3
    neighbourhood; nothing else (28 x 28: dilation 4)."""
    stage = gg_stage(16, glance_pos_bias=False, mlp_ratio=1.0)
    x = torch.randn(1, 28, 28, 16, requires_grad=True)
    stage(x, lambda block, *args: block(*args))[0, 5, 6].sum().backward()
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[1::4, 2::4] = True  # partition (5 mod 4, 6 mod 4)
    expected[4:7, 5:8] = True
    assert torch.equal(x.grad.abs().sum(-1)[0] > 0, expected)


def expected_params(depths: tuple[int, ...], glance_pos_bias: bool, C: int = 96, heads: tuple[int, ...] = (3, 6, 12, 24),
                    k: int = 3, mlp_ratio: int = 4) -> int:
    """Backbone parameters from the architecture, with all four output norms."""
    total = 3 * 16 * C + C + 2 * C  # patch embedding conv 4x4 + LayerNorm
    for i, depth in enumerate(depths):
        c = C * 2 ** i
        block = (2 * 2 * c  # norm1, norm2
                 + 3 * c * c + 3 * c + c * c + c  # qkv, proj
                 + glance_pos_bias * (2 * M - 1) ** 2 * heads[i]  # relative position bias table
                 + c * k * k + c  # Gaze depth-wise conv
                 + 2 * mlp_ratio * c * c + mlp_ratio * c + c)  # MLP
        total += depth * block + 2 * c  # + output norm
        if i < 3:
            total += 2 * 4 * c + 4 * c * 2 * c  # patch merging: LayerNorm(4c), linear 4c -> 2c
    return total


# Backbone parameters (the README's figures): the paper's design, and with our Glance position bias.
PARAMS = {('gg_t', False): 27_541_536, ('gg_s', False): 48_881_184,
          ('gg_t', True): 27_564_858, ('gg_s', True): 48_928_842}


@pytest.mark.parametrize('glance_pos_bias', [False, True], ids=['default', 'glance_pos_bias'])
@pytest.mark.parametrize('variant,depths,paper_millions', [('gg_t', (2, 2, 6, 2), 28), ('gg_s', (2, 2, 18, 2), 50)])
def test_parameter_count(variant, depths, paper_millions, glance_pos_bias):
    """The backbone's parameters from the architecture formula; as ImageNet classifiers (the output norms
    replaced by the final LayerNorm, plus the 1000-way head) within 2% of the paper's 28M / 50M."""
    with torch.device('meta'):
        model = vt_backbones.create_backbone(variant, glance_pos_bias=glance_pos_bias)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_params(depths, glance_pos_bias) == PARAMS[variant, glance_pos_bias]
    assert any('relative_position_bias_table' in n for n, _ in model.named_parameters()) == glance_pos_bias
    output_norms = 2 * 96 * (1 + 2 + 4 + 8)
    classifier = count - output_norms + 2 * 768 + 768 * 1000 + 1000
    assert abs(classifier / (paper_millions * 1e6) - 1) < 0.02


# ---- our own checkpoints -------------------------------------------------------------------------
BOTH_SETTINGS = pytest.mark.parametrize('glance_pos_bias', [False, True], ids=['default', 'glance_pos_bias'])


def trained_like(variant: str = 'gg_t', glance_pos_bias: bool = False) -> torch.nn.Module:
    model = vt_backbones.create_backbone(variant, drop_path_rate=0.0, glance_pos_bias=glance_pos_bias).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    return model


@BOTH_SETTINGS
def test_own_checkpoint_converts_and_loads(tmp_path, glance_pos_bias):
    """A detector-style checkpoint (``state_dict`` with ``backbone.*`` and a neck) through convert_file; the
    report says which setting the checkpoint needs."""
    source = trained_like(glance_pos_bias=glance_pos_bias)
    src, dst = tmp_path / 'gg.pth', tmp_path / 'converted.pth'
    ckpt = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    ckpt['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': ckpt, 'meta': {}}, src)
    # Detected without a model name, though Swin's official layout matches its keys too (GG keeps Swin's names).
    report = convert_file(str(src), str(dst))
    assert (report.model, report.source_format, report.new) == ('gg_t', 'ours', [])
    assert report.model_kwargs == ({'glance_pos_bias': True} if glance_pos_bias else {})
    model = vt_backbones.create_backbone('gg_t', drop_path_rate=0.0, glance_pos_bias=glance_pos_bias).eval()
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), source(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('saved_with,loaded_into', [(False, True), (True, False)])
def test_a_checkpoint_of_the_other_setting_is_refused_naming_the_tables(saved_with, loaded_into):
    source = trained_like(glance_pos_bias=saved_with).state_dict()
    model = vt_backbones.create_backbone('gg_t', glance_pos_bias=loaded_into)
    hint = r'(?s)unexpected \(12\): .*relative_position_bias_table.*built with glance_pos_bias=True' if saved_with \
        else r'missing \(12\): .*relative_position_bias_table'
    with pytest.raises(ConversionError, match=hint):
        convert_state_dict(source, model=model)


@BOTH_SETTINGS
def test_init_cfg_pretrained_with_a_classifier_checkpoint(tmp_path, glance_pos_bias):
    """A classifier built on this backbone keeps only the last output norm; the others are new."""
    source = trained_like(glance_pos_bias=glance_pos_bias)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(('norm0', 'norm1', 'norm2'))}
    src = tmp_path / 'gg_t_in1k.pth'
    torch.save({'state_dict': {**{f'module.backbone.{k}': v for k, v in state.items()},
                               'module.head.fc.weight': torch.zeros(1000, 768)}}, src)
    model = vt_backbones.create_backbone('gg_t', glance_pos_bias=glance_pos_bias,
                                         init_cfg=dict(type='Pretrained', checkpoint=str(src)))
    model.init_weights()
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@BOTH_SETTINGS
def test_window_size_change_resizes_the_tables(glance_pos_bias):
    source = trained_like(glance_pos_bias=glance_pos_bias).state_dict()
    model = vt_backbones.create_backbone('gg_t', window_size=12, glance_pos_bias=glance_pos_bias)
    converted, report = convert_state_dict(source, model=model)
    assert len(report.resized) == 12 * glance_pos_bias
    if glance_pos_bias:
        assert converted['layers.0.blocks.0.attn.relative_position_bias_table'].shape == (23 * 23, 3)
    model.load_state_dict(converted, strict=True)


def test_swin_checkpoint_is_not_a_gg_checkpoint():
    swin = vt_backbones.create_backbone('swin_t').state_dict()
    with pytest.raises(ConversionError, match='not a GGTransformer checkpoint'):
        convert_state_dict(swin, model_name='gg_t')


def test_cli_converts_with_model_name(tmp_path):
    src, dst = tmp_path / 'gg_s.pth', tmp_path / 'out.pth'
    with torch.device('meta'):
        shapes = vt_backbones.create_backbone('gg_s').state_dict()
    torch.save({k: torch.zeros(v.shape) for k, v in shapes.items()}, src)
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'), str(src), str(dst),
                             '--model', 'gg_s'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert torch.load(dst, weights_only=True)['meta']['model'] == 'gg_s'

"""GG-Transformer specifics: GG-MSA against a loop-by-loop transcription of our reading of the paper's
GG-MSA (its Sec. 3 could not be re-checked, see gg.py), the parameter count from the architecture formula
(and the paper's), and the converter for our own checkpoints.

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
from vt_backbones.models.gg import GGStage

from conftest import ROOT

M = 7


def paper_gg_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One GG block written from the paper, loop by loop: ``[B, H, W, C]`` -> same shape.

    The map is zero-padded to ``M * ceil(H / M)`` x ``M * ceil(W / M)``; partition ``(i, j)`` takes rows
    ``i::dh`` and columns ``j::dw`` (``dh, dw`` = padded size / M); attention with the relative position
    bias of the ``M x M`` lattice, padded keys excluded; the Gaze depth-wise conv on the values of the
    real map; their sum through the output projection; then the MLP.
    """
    attn = block.attn
    B, H, W, C = x.shape
    heads, d = attn.num_heads, C // attn.num_heads
    qkv = attn.qkv(block.norm1(x))
    Hp, Wp = M * math.ceil(H / M), M * math.ceil(W / M)
    dh, dw = Hp // M, Wp // M
    padded = F.pad(qkv, (0, 0, 0, Wp - W, 0, Hp - H))
    real = torch.zeros(Hp, Wp, dtype=torch.bool)
    real[:H, :W] = True
    rows, cols = torch.meshgrid(torch.arange(M), torch.arange(M), indexing='ij')
    dr = rows.flatten()[:, None] - rows.flatten()[None, :]
    dc = cols.flatten()[:, None] - cols.flatten()[None, :]
    bias = attn.relative_position_bias_table[(dr + M - 1) * (2 * M - 1) + dc + M - 1].permute(2, 0, 1)
    glance = torch.zeros(B, Hp, Wp, C)
    for i in range(dh):
        for j in range(dw):
            part = padded[:, i::dh, j::dw].reshape(B, M * M, 3, heads, d)
            q, k, v = part.permute(2, 0, 3, 1, 4)  # [B, heads, N, d]
            logits = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
            logits = logits.masked_fill(~real[i::dh, j::dw].reshape(-1), float('-inf'))
            out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, M, M, C)
            glance[:, i::dh, j::dw] = out
    values = qkv[..., 2 * C:].permute(0, 3, 1, 2)
    gaze = F.conv2d(values, attn.gaze_conv.weight, attn.gaze_conv.bias, padding=1, groups=C).permute(0, 2, 3, 1)
    x = x + attn.proj(glance[:, :H, :W] + gaze)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize('size', [(14, 21), (10, 17), (5, 5), (56, 56)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_gg_msa_matches_the_paper_formula(size):
    """Exact multiples (dilation 2, 3), padding in both directions, a map smaller than a partition (one
    padded partition), and stage 1 at 224 (dilation 8)."""
    stage = GGStage(dim=32, depth=1, num_heads=2, window_size=M, gaze_kernel_size=3, mlp_ratio=2.0,
                    qkv_bias=True, drop=0.0, attn_drop=0.0, drop_paths=[0.0], downsample=False).eval()
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
    stage = GGStage(dim=16, depth=1, num_heads=2, window_size=M, gaze_kernel_size=3, mlp_ratio=1.0,
                    qkv_bias=True, drop=0.0, attn_drop=0.0, drop_paths=[0.0], downsample=False).eval()
    x = torch.randn(1, 28, 28, 16, requires_grad=True)
    stage(x, lambda block, *args: block(*args))[0, 5, 6].sum().backward()
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[1::4, 2::4] = True  # partition (5 mod 4, 6 mod 4)
    expected[4:7, 5:8] = True
    assert torch.equal(x.grad.abs().sum(-1)[0] > 0, expected)


def expected_params(depths: tuple[int, ...], C: int = 96, heads: tuple[int, ...] = (3, 6, 12, 24), k: int = 3,
                    mlp_ratio: int = 4) -> int:
    """Backbone parameters from the architecture, with all four output norms."""
    total = 3 * 16 * C + C + 2 * C  # patch embedding conv 4x4 + LayerNorm
    for i, depth in enumerate(depths):
        c = C * 2 ** i
        block = (2 * 2 * c  # norm1, norm2
                 + 3 * c * c + 3 * c + c * c + c  # qkv, proj
                 + (2 * M - 1) ** 2 * heads[i]  # relative position bias table
                 + c * k * k + c  # Gaze depth-wise conv
                 + 2 * mlp_ratio * c * c + mlp_ratio * c + c)  # MLP
        total += depth * block + 2 * c  # + output norm
        if i < 3:
            total += 2 * 4 * c + 4 * c * 2 * c  # patch merging: LayerNorm(4c), linear 4c -> 2c
    return total


@pytest.mark.parametrize('variant,depths,paper_millions', [('gg_t', (2, 2, 6, 2), 28), ('gg_s', (2, 2, 18, 2), 50)])
def test_parameter_count(variant, depths, paper_millions):
    """27,564,858 (GG-T) and 48,928,842 (GG-S) backbone parameters; as ImageNet classifiers (the output norms
    replaced by the final LayerNorm, plus the 1000-way head) within 2% of the paper's 28M / 50M."""
    with torch.device('meta'):
        model = vt_backbones.create_backbone(variant)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_params(depths) == {'gg_t': 27_564_858, 'gg_s': 48_928_842}[variant]
    output_norms = 2 * 96 * (1 + 2 + 4 + 8)
    classifier = count - output_norms + 2 * 768 + 768 * 1000 + 1000
    assert abs(classifier / (paper_millions * 1e6) - 1) < 0.02


# ---- our own checkpoints -------------------------------------------------------------------------
def trained_like(variant: str = 'gg_t') -> torch.nn.Module:
    model = vt_backbones.create_backbone(variant, drop_path_rate=0.0).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    return model


def test_own_checkpoint_converts_and_loads(tmp_path):
    """A detector-style checkpoint (``state_dict`` with ``backbone.*`` and a neck) through convert_file."""
    source = trained_like()
    src, dst = tmp_path / 'gg.pth', tmp_path / 'converted.pth'
    ckpt = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    ckpt['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    torch.save({'state_dict': ckpt, 'meta': {}}, src)
    # Detected without a model name, though Swin's official layout matches its keys too (GG keeps Swin's names).
    report = convert_file(str(src), str(dst))
    assert (report.model, report.source_format, report.new) == ('gg_t', 'vt_backbones', [])
    model = vt_backbones.create_backbone('gg_t', drop_path_rate=0.0).eval()
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), source(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_init_cfg_pretrained_with_a_classifier_checkpoint(tmp_path):
    """A classifier built on this backbone keeps only the last output norm; the others are new."""
    source = trained_like()
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(('norm0', 'norm1', 'norm2'))}
    src = tmp_path / 'gg_t_in1k.pth'
    torch.save({'state_dict': {**{f'module.backbone.{k}': v for k, v in state.items()},
                               'module.head.fc.weight': torch.zeros(1000, 768)}}, src)
    model = vt_backbones.create_backbone('gg_t', init_cfg=dict(type='Pretrained', checkpoint=str(src)))
    model.init_weights()
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_window_size_change_resizes_the_tables():
    source = trained_like().state_dict()
    model = vt_backbones.create_backbone('gg_t', window_size=12)
    converted, report = convert_state_dict(source, model=model)
    assert len(report.resized) == 12 and converted['layers.0.blocks.0.attn.relative_position_bias_table'].shape == (
        23 * 23, 3)
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

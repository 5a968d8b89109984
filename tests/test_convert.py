"""Weight conversion, from the official checkpoint layouts in ../shared/reference/ckpt_keys."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch

import vt_backbones
from vt_backbones.convert import CONVERTERS, ConversionError, convert_file, convert_state_dict

from conftest import REFERENCE, ROOT

MANIFESTS = os.path.join(REFERENCE, 'ckpt_keys')
WITH_MANIFEST = [m for m in vt_backbones.list_models() if os.path.isfile(os.path.join(MANIFESTS, f'{m}.json'))]
#: A variant whose keys are the official ones (the converter only drops keys), so messages name checkpoint keys.
OFFICIAL_KEYS = 'swin_t'


def fake_official(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint with exactly the official keys, shapes and dtypes, filled with random values."""
    with open(os.path.join(MANIFESTS, f'{variant}.json')) as f:
        manifest = json.load(f)
    g = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape, dtype in manifest['keys']:
        dtype = getattr(torch, dtype)
        state_dict[key] = (torch.randn(shape, generator=g).to(dtype) if dtype.is_floating_point
                           else torch.zeros(shape, dtype=dtype))
    # A real state_dict lists a shared module's tensors under each of its paths (CoaT): tie those copies.
    for converter in CONVERTERS.values():
        for copy, original in converter.shared_copies(state_dict).items():
            state_dict[copy] = state_dict[original]
    return state_dict


def new_keys(model: torch.nn.Module) -> set[str]:
    patterns = CONVERTERS[type(model).__name__].new_keys
    return {k for k in model.state_dict() if any(re.fullmatch(p, k) for p in patterns)}


def no_files_but(directory, *names) -> None:
    assert sorted(os.listdir(directory)) == sorted(names)


@pytest.mark.parametrize('variant', WITH_MANIFEST)
def test_official_checkpoint_converts_and_loads(variant, tmp_path):
    source = fake_official(variant)
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save({'model': source, 'epoch': 300}, src)
    report = convert_file(str(src), str(dst))  # model auto-detected
    assert report.model == variant
    converted = torch.load(dst, weights_only=True)
    assert converted['meta']['model'] == variant and converted['meta']['format'] == 'official'
    model = vt_backbones.create_backbone(variant)
    missing, unexpected = model.load_state_dict(converted['state_dict'], strict=False)
    assert not unexpected
    assert set(missing) == new_keys(model) == set(report.new)
    # Every tensor that keeps its name keeps its value.
    state = model.state_dict()
    kept = [k for k in source if k in state]
    assert kept
    for key in kept:
        assert torch.equal(state[key], source[key]), key


def test_bare_state_dict_and_wrapped_detector_checkpoint():
    variant = OFFICIAL_KEYS
    source = fake_official(variant)
    bare, _ = convert_state_dict(dict(source))
    detector = {f'backbone.{k}': v for k, v in source.items()}
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    wrapped, report = convert_state_dict({f'module.{k}': v for k, v in detector.items()})
    assert report.dropped['neck.lateral_convs.0.conv.weight'] == 'not part of the backbone'
    assert bare.keys() == wrapped.keys()
    assert all(torch.equal(bare[k], wrapped[k]) for k in bare)


def test_truncated_file_gives_clear_error_and_no_output(tmp_path):
    src = tmp_path / 'official.pth'
    torch.save({'model': fake_official(OFFICIAL_KEYS)}, src)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    with pytest.raises(ConversionError, match='cannot read checkpoint'):
        convert_file(str(src), str(tmp_path / 'out.pth'))
    no_files_but(tmp_path, 'official.pth')


def test_checkpoint_of_another_family_is_rejected(tmp_path):
    other = 'twins_pcpvt_s' if 'twins_pcpvt_s' not in vt_backbones.list_models() else 'focal_t'
    src = tmp_path / 'other.pth'
    torch.save({'model': fake_official(other)}, src)
    target = 'swin_t' if other == 'twins_pcpvt_s' else 'twins_pcpvt_s'
    with pytest.raises(ConversionError, match=f'not a {vt_backbones.family_of(target).__name__} checkpoint'):
        convert_file(str(src), str(tmp_path / 'out.pth'), model_name=target)
    no_files_but(tmp_path, 'other.pth')


@pytest.mark.parametrize('variant', [OFFICIAL_KEYS])
def test_cli_names_a_removed_key_and_writes_nothing(variant, tmp_path):
    source = fake_official(variant)
    removed = next(k for k in source if k.endswith('.weight') and source[k].dim() == 2)
    del source[removed]
    src = tmp_path / 'broken.pth'
    torch.save({'model': source}, src)
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'), str(src),
                             str(tmp_path / 'out.pth'), '--model', variant], capture_output=True, text=True)
    assert result.returncode == 1
    assert 'missing (1)' in result.stderr and removed in result.stderr
    no_files_but(tmp_path, 'broken.pth')


def test_cli_converts_several_files_into_a_dir_with_a_progress_bar(tmp_path):
    variants = WITH_MANIFEST[:2]
    sources = []
    for variant in variants:
        sources.append(str(tmp_path / f'official_{variant}.pth'))
        torch.save({'model': fake_official(variant)}, sources[-1])
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'not a checkpoint')
    out = tmp_path / 'out'
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'convert_weights.py'), *sources,
                             str(broken), '--out-dir', str(out)], capture_output=True, text=True)
    assert result.returncode == 1  # one file failed: named, and the others are still converted
    assert f'error: {broken}' in result.stderr
    assert '3/3' in result.stderr  # tqdm's bar reached the last file
    no_files_but(out, *(f'{variant}_vtb.pth' for variant in variants))  # no staging file left behind
    for variant in variants:
        model = vt_backbones.create_backbone(variant)
        state_dict = torch.load(out / f'{variant}_vtb.pth')['state_dict']
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        assert set(missing) == new_keys(model) and not unexpected, variant


def test_mis_shaped_key_is_named(tmp_path):
    variant = OFFICIAL_KEYS
    source = fake_official(variant)
    key = next(k for k in source if k.endswith('mlp.fc1.weight'))
    source[key] = source[key][:-1]
    with pytest.raises(ConversionError, match=re.escape(key)):
        convert_state_dict(source, model_name=variant)


def test_init_cfg_pretrained_converts_an_official_file(tmp_path):
    variant = OFFICIAL_KEYS
    source = fake_official(variant, seed=3)
    src = tmp_path / 'official.pth'
    torch.save({'model': source}, src)
    model = vt_backbones.create_backbone(variant, init_cfg=dict(type='Pretrained', checkpoint=str(src)))
    model.init_weights()
    state = model.state_dict()
    for key in source:
        if key in state:
            assert torch.equal(state[key], source[key]), key


# ---- Swin specifics ------------------------------------------------------------------------------
def test_swin_window12_tables_are_resized_bicubic():
    source = fake_official('swin_b')
    key = 'layers.0.blocks.0.attn.relative_position_bias_table'
    source[key] = torch.full_like(source[key], 0.25)  # bicubic keeps a constant table constant
    model = vt_backbones.create_backbone('swin_b', window_size=12)
    converted, report = convert_state_dict(source, model=model)
    assert converted[key].shape == (23 * 23, 4)
    torch.testing.assert_close(converted[key], torch.full((23 * 23, 4), 0.25))
    assert len(report.resized) == 24
    model.load_state_dict(converted, strict=False)


def test_swin_timm_layout_converts_like_official():
    official = fake_official('swin_t')
    timm = {}
    for key, value in official.items():
        m = re.match(r'layers\.(\d)\.downsample\.(.*)', key)
        key = f'layers.{int(m[1]) + 1}.downsample.{m[2]}' if m else key
        timm[key.replace('head.', 'head.fc.')] = value
    a, _ = convert_state_dict(official)
    b, report = convert_state_dict(timm)
    assert report.source_format == 'timm'
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_swin_matches_mmdet_swin_through_openmmlab_conversion():
    """mmdet's SwinTransformer is an independent implementation of the official dense Swin."""
    mmdet_backbones = pytest.importorskip('mmdet.models.backbones')
    torch.manual_seed(0)
    theirs = mmdet_backbones.SwinTransformer(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                                             drop_path_rate=0.0)
    theirs.eval()  # (mmdet's train() returns None, so no chaining)
    for p in theirs.parameters():  # random (non-default) values everywhere, norms and tables included
        torch.nn.init.normal_(p, std=0.1)
    ckpt = {'state_dict': {f'backbone.{k}': v for k, v in theirs.state_dict().items()}}
    converted, report = convert_state_dict(ckpt['state_dict'], model_name='swin_t')
    assert report.source_format == 'openmmlab' and not report.new
    ours = vt_backbones.create_backbone('swin_t', drop_path_rate=0.0).eval()
    ours.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

"""Every checkpoint we write, we read: each registered variant's weights round the tools (issue 25).

For every variant (a new family is covered without edits): an official file, faked from its manifest in
../shared/reference/ckpt_keys, through tools/convert_weights.py and back in through ``init_cfg=Pretrained``; the
converted file through the tool again (our own layout: the same tensors); our ``state_dict()`` saved bare, as
``{'state_dict': ...}`` and inside a whole detector checkpoint (``backbone.`` prefix), loaded the same way.
tests/test_onnx.py exports one model per family from such a checkpoint, tests/test_e2e.py reads tools/train.py's
checkpoints back with the other tools.
"""
from __future__ import annotations

import json
import os

import pytest
import torch

import vt_backbones
from vt_backbones.convert import OURS, convert_file

from conftest import load_tool
from test_convert import MANIFESTS, fake_official

VARIANTS = vt_backbones.list_models()
#: Families whose authors released no weights, hence no manifest of official keys.
NO_OFFICIAL_CHECKPOINT = {'GGTransformer'}
WITH_OFFICIAL = [v for v in VARIANTS if vt_backbones.family_of(v).__name__ not in NO_OFFICIAL_CHECKPOINT]


convert_weights = load_tool('convert_weights')  # its main(argv) in this process: the CLI without the start-up


def fingerprint(tensor: torch.Tensor) -> tuple:
    """Shape, sum and first values: tells apart any two of the random tensors these tests make."""
    flat = tensor.detach().double().flatten()
    return tuple(tensor.shape), round(flat.sum().item(), 6), tuple(flat[:4].tolist())


def assert_same_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    differing = [key for key in expected if not torch.equal(got[key], expected[key])]
    assert not differing, f'{len(differing)} tensors differ: {differing[:5]}'


def test_every_family_but_those_without_official_weights_has_manifests():
    """A new family needs its official keys in ../shared/reference/ckpt_keys (or a place in NO_OFFICIAL_CHECKPOINT)."""
    assert {v for v in VARIANTS if not os.path.isfile(os.path.join(MANIFESTS, f'{v}.json'))} \
        == {v for v in VARIANTS if v not in WITH_OFFICIAL}


@pytest.mark.slow
@pytest.mark.parametrize('variant', WITH_OFFICIAL)
def test_official_file_through_the_tool_loads_and_converts_again_to_itself(variant, tmp_path, capsys):
    with open(os.path.join(MANIFESTS, f'{variant}.json')) as f:
        wrapper = json.load(f)['wrapper']
    source = fake_official(variant, seed=1)
    official, converted_path, again_path = (str(tmp_path / name) for name in ('official.pth', 'ours.pth', 'again.pth'))
    torch.save({wrapper: source} if wrapper else source, official)
    assert convert_weights.main([official, converted_path]) == 0
    converted = torch.load(converted_path, weights_only=True)
    assert converted['meta']['model'] == variant and converted['meta']['format'] != OURS

    model = vt_backbones.create_backbone(variant, init_cfg=dict(type='Pretrained', checkpoint=converted_path),
                                         **converted['meta']['model_kwargs'])
    model.init_weights()
    state = model.state_dict()
    assert_same_tensors({k: state[k] for k in converted['state_dict']}, converted['state_dict'])
    assert sorted(state.keys() - converted['state_dict'].keys()) == sorted(converted['meta']['new_keys'])
    # Whatever the renaming, every loaded tensor is one of the official file's, unchanged.
    official_values = {fingerprint(t) for t in source.values()}
    assert all(fingerprint(t) in official_values for t in converted['state_dict'].values())

    capsys.readouterr()
    assert convert_weights.main([converted_path, again_path]) == 0  # idempotent
    assert 'ours (nothing to convert)' in capsys.readouterr().out
    again = torch.load(again_path, weights_only=True)
    assert (again['meta']['format'], again['meta']['model']) == (OURS, variant)
    assert again['meta']['model_kwargs'] == converted['meta']['model_kwargs']
    assert_same_tensors(again['state_dict'], converted['state_dict'])


def scramble_(model: torch.nn.Module) -> None:
    """Every weight and buffer made unlike any saved value: NaN floats, shifted integers."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float('nan'))
            else:
                tensor.add_(1)


@pytest.mark.slow
@pytest.mark.parametrize('variant', VARIANTS)
def test_our_state_dict_loads_bare_wrapped_and_inside_a_detector(variant, tmp_path):
    model = vt_backbones.create_backbone(variant)
    saved = {key: value.clone() for key, value in model.state_dict().items()}
    detector = {'backbone.' + key: value for key, value in saved.items()}
    detector.update({'neck.lateral_convs.0.conv.weight': torch.zeros(1), 'data_preprocessor.mean': torch.zeros(3)})
    files = {'bare': saved, 'wrapped': {'state_dict': saved},
             'detector': {'meta': {'epoch': 12}, 'state_dict': detector, 'optimizer': {'state': {}}}}
    for name, content in files.items():
        torch.save(content, tmp_path / f'{name}.pth')
        scramble_(model)
        model.init_cfg = dict(type='Pretrained', checkpoint=str(tmp_path / f'{name}.pth'))
        model.init_weights()
        assert_same_tensors(model.state_dict(), saved)

    report = convert_file(str(tmp_path / 'detector.pth'), str(tmp_path / 'converted.pth'))  # variant detected
    assert (report.source_format, report.model, report.new) == (OURS, variant, [])
    assert report.summary().startswith(f'ours (nothing to convert): weights for {variant}')
    assert_same_tensors(torch.load(tmp_path / 'converted.pth', weights_only=True)['state_dict'], saved)

"""Twins specifics: equality with mmseg's independent port of the official dense code, the other
checkpoint layouts (mmseg, mmpretrain), loading errors, and Mask R-CNN / UperNet on the smallest variant.

The contract and the official-layout conversion are checked for every variant by test_contract.py and
test_convert.py.
"""
from __future__ import annotations

import re

import pytest
import torch

import vt_backbones
from vt_backbones.convert import ConversionError, convert_state_dict

from test_convert import fake_official

# mmseg 1.x configs of the official models (configs/twins/*, ported from Meituan-AutoML/Twins).
MMSEG_ARGS = {
    'twins_pcpvt_s': ('PCPVT', dict(embed_dims=[64, 128, 320, 512], num_heads=[1, 2, 5, 8], mlp_ratios=[8, 8, 4, 4],
                                    depths=[3, 4, 6, 3], sr_ratios=[8, 4, 2, 1], norm_after_stage=False)),
    'twins_svt_s': ('SVT', dict(embed_dims=[64, 128, 256, 512], num_heads=[2, 4, 8, 16], mlp_ratios=[4, 4, 4, 4],
                                depths=[2, 2, 10, 4], sr_ratios=[8, 4, 2, 1], windiow_sizes=[7, 7, 7, 7],
                                norm_after_stage=True)),
}


def mmseg_twins(variant: str) -> torch.nn.Module:
    """mmseg's backbone with random values everywhere and the official LayerNorm epsilons.

    mmseg builds every LayerNorm with eps 1e-5; the official code (and ours) uses 1e-6 in the blocks and
    the SVT output norms (``norm_layer=partial(nn.LayerNorm, eps=1e-6)``), 1e-5 in the patch embeddings and
    after the sub-sampling conv. Setting them as the official code isolates the comparison from that choice.
    """
    backbones = pytest.importorskip('mmseg.models.backbones')
    cls_name, kwargs = MMSEG_ARGS[variant]
    torch.manual_seed(0)
    model = getattr(backbones, cls_name)(qkv_bias=True, drop_path_rate=0.0, **kwargs)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm) and re.fullmatch(r'layers\.\d+\.\d+\.norm[12]|norm_list\.\d', name):
            module.eps = 1e-6
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)  # random (non-default) values, norms included
    model.eval()
    return model


@pytest.mark.parametrize('variant', list(MMSEG_ARGS))
@pytest.mark.parametrize('size', [(224, 224), (256, 320)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_matches_mmseg_through_mmseg_conversion(variant, size):
    """mmseg's PCPVT/SVT is an independent port of the official dense code. At 224 no stage needs padding;
    at 256x320 LSA pads at the bottom and the right of every stage (the only case in which mmseg's mask is
    active; it masks with -1000, we with -inf: equal in float32) and every stage map is a multiple of its
    sr_ratio, so the sub-sampling conv sees no border."""
    theirs = mmseg_twins(variant)
    ckpt = {f'backbone.{k}': v for k, v in theirs.state_dict().items()}
    converted, report = convert_state_dict(ckpt, model_name=variant)
    assert report.source_format == 'mmseg' and not report.new
    ours = vt_backbones.create_backbone(variant, drop_path_rate=0.0).eval()
    ours.load_state_dict(converted, strict=True)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_svt_output_norms_are_in_the_trunk():
    """As the official dense SVT, each stage's LayerNorm also feeds the next stage: all four exist (and
    act) whatever out_indices, so a stage-4-only model equals stage 4 of the full one."""
    full = vt_backbones.create_backbone('twins_svt_s', drop_path_rate=0.0).eval()
    last = vt_backbones.create_backbone('twins_svt_s', drop_path_rate=0.0, out_indices=(3,)).eval()
    assert last.state_dict().keys() == full.state_dict().keys()
    last.load_state_dict(full.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = last(x)[0]
        torch.testing.assert_close(before, full(x)[3])
        torch.nn.init.normal_(last.norm1.weight)  # the stage-2 norm changes stage 4
        assert not torch.allclose(last(x)[0], before)


def test_gsa_keys_see_every_token():
    """At a map that is no multiple of sr_ratio the sub-sampling conv zero-pads its border (the official conv
    floors, so the last H mod sr rows and W mod sr columns reach no key): a change of the bottom-right token
    reaches the first token through the keys, and the number of keys is ceil(H/sr) * ceil(W/sr)."""
    from vt_backbones.models.twins import GlobalSubsampledAttention
    torch.manual_seed(0)
    gsa = GlobalSubsampledAttention(dim=16, num_heads=2, sr_ratio=4).eval()
    x = torch.randn(1, 9, 10, 16)
    keys = []
    gsa.kv.register_forward_hook(lambda module, args, out: keys.append(out.shape[1]))
    with torch.no_grad():
        a = gsa(x)
        x[0, 8, 9] += 1.0
        b = gsa(x)
    assert keys == [9, 9]  # 3 x 3 windows of 4 x 4 over 9 x 10
    assert not torch.allclose(a[0, 0, 0], b[0, 0, 0])


def _to_mmpretrain(official: dict[str, torch.Tensor], classifier: bool = True) -> dict[str, torch.Tensor]:
    """The official layout renamed as mmpretrain's ImageClassifier saves it."""
    out = {}
    for key, value in official.items():
        key = re.sub(r'^patch_embeds\.(\d)\.proj\.', r'patch_embeds.\1.projection.', key)
        key = re.sub(r'^pos_block\.(\d)\.proj\.0\.', r'position_encodings.\1.proj.', key)
        key = re.sub(r'^blocks\.', 'stages.', key)
        key = key.replace('.mlp.fc1.', '.ffn.layers.0.0.').replace('.mlp.fc2.', '.ffn.layers.1.')
        key = re.sub(r'^norm\.', 'norm_after_stage3.', key)
        key = re.sub(r'^head\.', 'head.fc.', key)
        out[key if key.startswith('head.') else f'backbone.{key}'] = value
    return out


@pytest.mark.parametrize('variant', ['twins_pcpvt_s', 'twins_svt_s'])
def test_mmpretrain_layout_converts_like_official(variant):
    official = fake_official(variant)
    a, _ = convert_state_dict(dict(official))
    b, report = convert_state_dict(_to_mmpretrain(official))
    assert report.source_format == 'mmpretrain' and report.model == variant
    assert report.dropped['norm_after_stage3.weight'] == 'final classification norm'
    assert report.dropped['head.fc.weight'] == 'not part of the backbone'
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_mmpretrain_dense_output_norms_become_ours():
    official = fake_official('twins_svt_s')
    mmpretrain = _to_mmpretrain(official)
    for i, dim in enumerate((64, 128, 256, 512)):
        mmpretrain[f'backbone.norm_after_stage{i}.weight'] = torch.full((dim,), float(i))
        mmpretrain[f'backbone.norm_after_stage{i}.bias'] = torch.zeros(dim)
    converted, report = convert_state_dict(mmpretrain, model_name='twins_svt_s')
    assert not report.new
    assert torch.equal(converted['norm2.weight'], torch.full((256,), 2.0))


def test_official_dense_checkpoint_output_norms_load():
    """A whole official Twins-SVT detector names the output norms backbone.norm_list.{i}."""
    official = fake_official('twins_svt_s')
    source = {f'backbone.{k}': v for k, v in official.items() if not k.startswith(('head.', 'norm.'))}
    for i, dim in enumerate((64, 128, 256, 512)):
        source[f'backbone.norm_list.{i}.weight'] = torch.full((dim,), 3.0)
        source[f'backbone.norm_list.{i}.bias'] = torch.zeros(dim)
    source['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(81, 1024)
    converted, report = convert_state_dict(source, model_name='twins_svt_s')
    assert report.source_format == 'official' and not report.new
    assert torch.equal(converted['norm3.weight'], torch.full((512,), 3.0))


def test_svt_checkpoint_is_not_loaded_into_pcpvt():
    with pytest.raises(ConversionError, match='not a PCPVT checkpoint: it looks like a SVT checkpoint'):
        convert_state_dict(fake_official('twins_svt_s'), model_name='twins_pcpvt_s')


def test_model_wrapped_file_loads_through_init_cfg(tmp_path):
    """The official dense loader reads only 'state_dict' and silently loads nothing from the official
    training files ({'model': ...}); ours converts them."""
    source = fake_official('twins_pcpvt_s', seed=5)
    src = tmp_path / 'pcpvt_small.pth'
    torch.save({'model': source, 'epoch': 299}, src)
    model = vt_backbones.create_backbone('twins_pcpvt_s', init_cfg=dict(type='Pretrained', checkpoint=str(src)))
    model.init_weights()
    state = model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in state)


def test_file_without_twins_weights_is_an_error(tmp_path):
    src = tmp_path / 'other.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, src)
    model = vt_backbones.create_backbone('twins_svt_s', init_cfg=dict(type='Pretrained', checkpoint=str(src)))
    with pytest.raises(ConversionError, match='not a SVT checkpoint'):
        model.init_weights()

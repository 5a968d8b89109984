"""The backbone contract, checked for every registered variant (no per-family special cases)."""
from __future__ import annotations

import csv
import functools
import math
import os
import re

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

import vt_backbones
from vt_backbones.convert import CONVERTERS

from conftest import REFERENCE, fill_padding_with

MODELS = vt_backbones.list_models()
SIZES = [(224, 224), (256, 320), (97, 131)]


def build(name: str, **kw) -> torch.nn.Module:
    kw.setdefault('drop_path_rate', 0.0)
    return vt_backbones.create_backbone(name, **kw)


def reference_params() -> dict[str, int]:
    with open(os.path.join(REFERENCE, 'params.csv')) as f:
        return {row['variant']: int(row['params_backbone']) for row in csv.DictReader(f)}


@pytest.fixture(scope='module', params=MODELS)
def eval_model(request) -> tuple[str, torch.nn.Module]:
    return request.param, build(request.param).eval()


@pytest.mark.parametrize('size', SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
def test_output_shapes_strides_channels(eval_model, size):
    name, model = eval_model
    H, W = size
    with torch.no_grad():
        outs = model(torch.randn(1, 3, H, W))
    assert len(outs) == 4 == len(model.out_channels)
    for i, out in enumerate(outs):
        stride = 4 * 2 ** i
        assert out.shape == (1, model.out_channels[i], math.ceil(H / stride), math.ceil(W / stride)), (name, i)
        assert torch.isfinite(out).all()


def test_padded_tokens_never_change_real_outputs(eval_model, monkeypatch):
    """97x131 needs padding in every stage; filling the padding with a large value must change nothing."""
    name, model = eval_model
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        reference = model(x)
        fill_padding_with(monkeypatch, 1000.0)
        padded = model(x)
    for ref, out in zip(reference, padded):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_out_indices_select_stages():
    name = MODELS[0]
    full = build(name).eval()
    part = build(name, out_indices=(1, 3)).eval()
    part.load_state_dict({k: v for k, v in full.state_dict().items() if k in part.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = full(x), part(x)
    assert part.out_channels == (full.out_channels[1], full.out_channels[3])
    torch.testing.assert_close(b[0], a[1])
    torch.testing.assert_close(b[1], a[3])


def _upstream_params(model: torch.nn.Module, x: torch.Tensor) -> list[set[str]]:
    """For k = 1..4, the names of the parameters that the outputs of the first k stages depend on."""
    named = [(n, p) for n, p in model.named_parameters()]
    losses = [o.float().pow(2).mean() for o in model(x)]
    upstream = []
    for k in range(1, len(losses) + 1):
        grads = torch.autograd.grad(sum(losses[:k]), [p for _, p in named], retain_graph=True, allow_unused=True)
        upstream.append({n for (n, _), g in zip(named, grads) if g is not None and g.abs().sum() > 0})
    return upstream


@pytest.mark.parametrize('name', MODELS)
def test_frozen_stages_freeze_exactly_the_stages(name):
    x = torch.randn(2, 3, 64, 64)
    free = build(name).train()
    all_params = {n for n, _ in free.named_parameters()}
    upstream = _upstream_params(free, x)
    previous: set[str] = set()
    for k in range(0, 5):
        model = build(name, frozen_stages=k)
        model.load_state_dict(free.state_dict())
        model.train()  # must not unfreeze
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        outs = model(x)
        for j, out in enumerate(outs):
            assert out.requires_grad == (j >= k), f'{name}: frozen_stages={k} but stage {j + 1} grad={out.requires_grad}'
        assert previous < frozen, f'{name}: frozen_stages={k} freezes nothing more than {k - 1}'
        if k >= 1:  # exactly the parameters upstream of the frozen outputs
            assert frozen == upstream[k - 1], name
        for module in model.modules():
            own = [p for p in module.parameters(recurse=False)]
            if own and not any(p.requires_grad for p in own):
                assert not module.training, f'{name}: frozen {type(module).__name__} left in train mode'
        previous = frozen
    assert previous == all_params


# (batch, H, W): 197x261 and 97x131 pad every stage (stage 4: 7x9, 4x5), 224 pads none (stage 4: 7x7), 32x32 is
# the smallest input (stage 4: 1x1, smaller than every window; two images, as BatchNorm in training needs more than
# one value per channel). At 64x96 (16x24 ... 2x3) no stage side is 7 and every window holds several real tokens.
GRADIENT_INPUTS = [(1, 224, 224), (1, 197, 261), (1, 97, 131), (2, 32, 32), (1, 64, 96)]
EVERY_PARAMETER_MATTERS = (1, 64, 96)


@pytest.mark.parametrize('name', MODELS)
def test_every_trainable_parameter_gets_a_gradient(name):
    """DDP with ``find_unused_parameters=False`` (mmdet's and mmseg's default) fails on the next iteration when
    a trainable parameter got no gradient, so each one must be in the graph of the four outputs at every size.

    An exactly-zero gradient is fine for DDP (reduced like any other) and is right where a parameter cannot
    change the outputs at that size: a position bias in a window holding one real token (softmax over one key:
    Swin, Shuffle, CrossFormer at 32x32), Focal's window-to-neighbour tables where a stage side is exactly 7 (the
    official rule attends to no neighbours there). At a size where nothing of the kind happens every gradient
    must be non-zero: a parameter that never changes the outputs would be a silent bug.
    """
    model = build(name).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for B, H, W in GRADIENT_INPUTS:
        outs = model(torch.randn(B, 3, H, W))
        grads = torch.autograd.grad(sum(o.float().pow(2).mean() for o in outs), [p for _, p in named],
                                    allow_unused=True)
        unused = [n for (n, _), g in zip(named, grads) if g is None]
        assert not unused, f'{name} at {B}x{H}x{W}: no gradient for {unused}'
        if (B, H, W) == EVERY_PARAMETER_MATTERS:
            zero = [n for (n, _), g in zip(named, grads) if not g.any()]
            assert not zero, f'{name} at {B}x{H}x{W}: zero gradient for {zero}'


@functools.cache
def has_batchnorm(family: type) -> bool:
    with torch.device('meta'):  # structure only: the family's first variant
        return any(isinstance(m, _BatchNorm) for m in family(arch=next(iter(family.variants.values()))).modules())


WITH_BATCHNORM = [name for name in MODELS if has_batchnorm(vt_backbones.family_of(name))]


@pytest.mark.parametrize('name', WITH_BATCHNORM)
def test_norm_eval_keeps_batchnorm_in_eval(name):
    model = build(name, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns
    assert all(not m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bns))
    assert all(m.training for m in build(name, norm_eval=False).train().modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('name', MODELS)
def test_with_cp_same_outputs_and_gradients(name):
    plain = build(name).train()
    cp = build(name, with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 96)
    grads = []
    outs = []
    for model in (plain, cp):
        out = model(x)
        sum(o.pow(2).mean() for o in out).backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], msg=f'{name}: gradient of {n}')


@pytest.mark.parametrize('name', MODELS)
def test_clear_errors(name):
    cls = vt_backbones.family_of(name)
    model = build(name)
    cases = [
        (lambda: model(torch.randn(3, 64, 64)), r'x of shape \[B, 3, H, W\]'),
        (lambda: model(torch.randn(1, 4, 64, 64)), r'4 channels but in_channels=3'),
        (lambda: model(torch.randn(1, 3, 31, 64)), r'at least 32x32'),
        (lambda: cls(arch='gigantic'), r"unknown arch 'gigantic'.*valid: \["),
        (lambda: cls(arch=cls.variants[name], out_indices=(0, 4)), r'out_indices must be .* 0\.\.3'),
        (lambda: cls(arch=cls.variants[name], frozen_stages=5), r'frozen_stages must be an int in -1\.\.4'),
        (lambda: cls(arch=cls.variants[name], pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
         r"pretrained='a.pth' and init_cfg=.* are both set; give only init_cfg"),
        (lambda: cls(arch=cls.variants[name], pretrained=True), r'pretrained must be a checkpoint path or URL'),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize('name', MODELS)
def test_pretrained_argument_as_mmdet_and_mmseg_backbones(name, recwarn):
    """mmseg's EncoderDecoder passes ``model.pretrained`` to the backbone: None is silent, a path becomes
    ``init_cfg=Pretrained`` (loaded through the converter, see test_mmdet_mmseg.py) with a deprecation warning."""
    with torch.device('meta'):  # construction only
        assert build(name, pretrained=None).init_cfg is None
        assert not [w for w in recwarn.list if 'pretrained' in str(w.message)]
        with pytest.warns(FutureWarning, match=r"pretrained is deprecated, use init_cfg=dict\(type='Pretrained'"):
            model = build(name, pretrained='checkpoints/x.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='checkpoints/x.pth')


def test_create_backbone_refuses_a_second_arch():
    with pytest.raises(ValueError, match=r"create_backbone\('swin_t'\) fixes arch='tiny'.*SwinTransformer\(arch=...\)"):
        vt_backbones.create_backbone('swin_t', arch=dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)))


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'swin_xl'.*swin_t"):
        vt_backbones.create_backbone('swin_xl')


@pytest.mark.parametrize('name', MODELS)
def test_parameter_count_matches_official(name):
    expected = reference_params()
    if name not in expected:
        pytest.skip(f'{name} has no official checkpoint')
    model = build(name)
    new_patterns = CONVERTERS[type(model).__name__].new_keys
    added = sum(p.numel() for n, p in model.named_parameters() if any(re.fullmatch(r, n) for r in new_patterns))
    total = sum(p.numel() for p in model.parameters())
    assert total - added == expected[name]


@pytest.mark.parametrize('name', MODELS)
def test_drop_path_rate_takes_effect(name):
    model = build(name, drop_path_rate=0.5).train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    a = model(x)[-1]
    torch.manual_seed(2)
    b = model(x)[-1]
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model(x)[-1], model(x)[-1])


@pytest.mark.parametrize('family', vt_backbones.families(), ids=lambda cls: cls.__name__)
def test_every_family_has_a_weight_converter(family):
    assert family.__name__ in CONVERTERS, f'{family.__name__} registers no FamilyConverter'

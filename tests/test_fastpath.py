"""The fast path (issue 11): every variant under torch.autocast, and compiled blocks (``compile_blocks``).

Mixed precision is checked against the same model in fp32 (independent of any stored figure): outputs and
gradients finite, every output map within a relative L2 error bound. Compilation is checked with dynamo's own
reports (graph breaks, graphs compiled) and against eager outputs.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import vt_backbones
from vt_backbones import base, layers
from vt_backbones.export import reduced_depth

from conftest import SMALLEST  # the smallest variant of every family

MODELS = vt_backbones.list_models()
#: The variant whose blocks the compile tests compile (shifted windows: masks and two grids per stage).
COMPILED = 'swin_t'
# 64x96 pads every windowed stage (stage 1: 16x24 tokens against 7x7 windows) and gives stage 4 a 2x3 map.
SIZE = (64, 96)
# Relative L2 error of every output map under autocast, against fp32 (measured on all 29 variants: at most 0.024
# for bf16 and 0.003 for fp16; bf16 keeps 8 mantissa bits, fp16 11).
OUTPUT_BOUND = {torch.bfloat16: 0.04, torch.float16: 0.01}
# The same for the gradient of all parameters, concatenated (measured: at most 0.018 for bf16 and 0.0025 for fp16,
# except Shuffle, whose BatchNorm-normalised blocks reach 0.145 and 0.049 for shuffle_b).
GRADIENT_BOUND = {torch.bfloat16: 0.2, torch.float16: 0.07}


def build(name: str, **kw) -> torch.nn.Module:
    kw.setdefault('drop_path_rate', 0.0)
    return vt_backbones.create_backbone(name, **kw)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref).norm() / ref.norm()).item()


def forward_backward(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None,
                     weights: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Outputs (fp32 copies) and the flat gradient of a fixed random projection of all outputs."""
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        outs = model(x)
    weights = weights or [torch.randn(o.shape, generator=torch.Generator().manual_seed(i)) for i, o in enumerate(outs)]
    sum((o.float() * w).sum() for o, w in zip(outs, weights)).backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return [o.detach().float() for o in outs], grads


def check_autocast(name: str, dtype: torch.dtype) -> None:
    model = build(name).train()
    x = torch.randn(1, 3, *SIZE)
    ref_outs, ref_grads = forward_backward(model, x, None)
    outs, grads = forward_backward(model, x, dtype)
    for i, (out, ref) in enumerate(zip(outs, ref_outs)):
        assert torch.isfinite(out).all(), f'{name} {dtype}: output {i} not finite'
        error = relative_error(out, ref)
        assert error < OUTPUT_BOUND[dtype], f'{name} {dtype}: output {i} relative error {error:.4f}'
    assert torch.isfinite(grads).all(), f'{name} {dtype}: gradients not finite'
    assert grads.numel() == ref_grads.numel()  # every parameter that gets a gradient in fp32 gets one here
    error = relative_error(grads, ref_grads)
    assert error < GRADIENT_BOUND[dtype], f'{name} {dtype}: gradient relative error {error:.4f}'


@pytest.mark.parametrize('name', MODELS)
def test_bf16_autocast_forward_backward_close_to_fp32(name):
    check_autocast(name, torch.bfloat16)


@pytest.mark.parametrize('name', SMALLEST)
def test_fp16_autocast_forward_backward_close_to_fp32(name):
    """fp16 is what the official recipes trained with on GPUs; CPU autocast runs the same casts."""
    check_autocast(name, torch.float16)


@pytest.mark.parametrize('learned', [False, True], ids=['sdpa', 'learned-mask'])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_masked_attention_rows_stay_finite_in_half_precision(dtype, learned):
    """A query whose keys are all masked but itself (a padded token's row, a shifted region of one token) and a
    large bias: the -inf additive mask must give exactly the self value, never NaN, in half precision; also on
    the written-out path a mask with a gradient takes on a CPU."""
    q, k, v = (torch.randn(2, 3, 5, 8).to(dtype) for _ in range(3))
    mask = torch.full((5, 5), layers.MASKED).fill_diagonal_(0.0)
    bias = 1e4 * torch.randn(3, 5, 5)  # beyond what a half-precision logit can hold next to -inf
    out = layers.attention(q, k, v, (bias + mask).to(dtype)[None].requires_grad_(learned))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, v)


# ---- compiled blocks --------------------------------------------------------------------------------
# Tracing costs seconds per variant and size: the smallest variant of every family, and CoaT's parallel blocks
# (the other variants run the same code with other widths and depths).
WHOLE_MODELS = SMALLEST + ['coat_tiny']
# Six sizes a detector or segmentor feeds (square, landscape, portrait, padded or not; shorter side >= 250). At
# smaller inputs a model may compile once per regime it has there: CrossFormer groups a stage map no larger than
# its group (input <= 224) differently, and PyTorch picks CoaT's depthwise-conv kernel by the map's size (< ~33
# tokens at stage 4): both are guards on sizes, each costing one more compile the first time it flips.
WHOLE_MODEL_SIZES = [(256, 320), (320, 256), (250, 330), (512, 512), (384, 384), (300, 452)]
#: What whole-model compilation (mmengine's ``compile=True``: torch.compile's defaults) may cost over those sizes:
#: the first size compiles static shapes, the second makes the sizes that changed dynamic; none after that.
MAX_COMPILES = 2


def count_whole_model_compiles(forward, sizes=WHOLE_MODEL_SIZES, batch: int = 1, **kwargs) -> list[int]:
    """``torch.compile(forward)`` with torch.compile's defaults and a counting backend (dynamo only, no inductor)
    called at ``sizes``: the graphs each size compiled. Fails on any graph break (each compile one graph)."""
    from torch._dynamo.testing import CompileCounter
    torch._dynamo.reset()
    counters.clear()
    backend = CompileCounter()
    compiled = torch.compile(forward, backend=backend)
    per_size = []
    for H, W in sizes:
        before = backend.frame_count
        compiled(torch.randn(batch, 3, H, W), **kwargs)
        per_size.append(backend.frame_count - before)
    assert not counters['graph_break'], f'graph breaks: {dict(counters["graph_break"])}'
    return per_size


@pytest.mark.parametrize('name', WHOLE_MODELS)
def test_whole_backbone_compiles_into_one_graph_twice_over_six_sizes(name):
    """mmengine's whole-model ``compile=True`` on a backbone (training mode, dynamo with a counting backend): one
    graph per compile, no graph break, `MAX_COMPILES` compiles over `WHOLE_MODEL_SIZES`, at the first sizes.
    Reduced depth: a stage's blocks are traced one by one, so depth adds time, not coverage."""
    per_size = count_whole_model_compiles(reduced_depth(name).train())
    assert per_size == [1] * MAX_COMPILES + [0] * (len(per_size) - MAX_COMPILES), \
        f'{name}: graphs compiled per size {per_size}'


# Three sizes for the compiled blocks' recompilation check: the first compile may specialise a stage with a single
# window (dynamo specialises sizes 0 and 1), the second generalises it; from then on, no new size may compile anything.
COMPILE_SIZES = [(64, 96), (97, 131), (80, 112)]


def unique_graphs() -> int:
    return counters['stats']['unique_graphs']


def check_compiled_blocks(name: str, options: dict, train: bool, **kw) -> None:
    """``compile_blocks=options`` against eager at `COMPILE_SIZES`: equal outputs (and gradients when ``train``),
    the same state_dict keys and trainable parameters, and nothing compiled at the third size."""
    torch._dynamo.reset()
    eager = build(name, **kw).train(train)
    compiled = build(name, compile_blocks=options, **kw).train(train)
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no '_orig_mod.' anywhere
    assert [n for n, p in compiled.named_parameters() if p.requires_grad] == \
        [n for n, p in eager.named_parameters() if p.requires_grad]
    for i, (H, W) in enumerate(COMPILE_SIZES):
        x = torch.randn(2, 3, H, W)
        graphs = unique_graphs()
        if train:
            (ref_outs, ref_grads), (outs, grads) = (forward_backward(m, x, None) for m in (eager, compiled))
            torch.testing.assert_close(grads, ref_grads, rtol=1e-3, atol=1e-4)
        else:
            with torch.no_grad():
                ref_outs, outs = eager(x), compiled(x)
        new = unique_graphs() - graphs
        if i == 0:
            assert new > 0, f'{name}: the blocks did not go through dynamo'
        elif i == 2:
            assert new == 0, f'{name}: {H}x{W} compiled {new} new graphs'
        for out, ref in zip(outs, ref_outs):
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_compiled_blocks_equal_eager_with_checkpointing_and_freezing():
    """Through AOTAutograd (forward and backward graphs, no inductor: fast), with ``with_cp`` and frozen stages;
    two stages only (each stage width is a graph of its own, and tracing them is what takes time)."""
    check_compiled_blocks(COMPILED, dict(backend='aot_eager'), train=True, frozen_stages=1, with_cp=True,
                          out_indices=(0, 1))


def test_static_shape_blocks_move_tokens_by_views_and_equal_eager():
    """``compile_blocks=dict(dynamic=False)`` on a CPU (`layers.tracing_static_blocks_for_cpu`): the block graphs
    move tokens by pad, roll and views and take the bias from the opaque `layers.gathered_bias`, no gather left in
    them, with eager's outputs and gradients (AOTAutograd, no inductor). Swin's shifted, padded windows; two stages."""
    aot_eager = torch._dynamo.lookup_backend('aot_eager')
    graphs = []

    def recording(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(str(gm.graph))
        return aot_eager(gm, example_inputs)

    torch._dynamo.reset()
    eager = build(COMPILED, out_indices=(0, 1)).train()
    compiled = build(COMPILED, out_indices=(0, 1), compile_blocks=dict(backend=recording, dynamic=False)).train()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, *SIZE)
    (ref_outs, ref_grads), (outs, grads) = (forward_backward(m, x, None) for m in (eager, compiled))
    torch.testing.assert_close((outs, grads), (ref_outs, ref_grads), rtol=1e-4, atol=1e-5)
    assert len(graphs) == 4  # two stages x (regular, shifted)
    assert all('gathered_bias' in g and 'index_select' not in g for g in graphs)
    assert sum('roll' in g for g in graphs) == 2  # the shifted blocks'


@pytest.mark.slow
@pytest.mark.heavy
def test_compiled_blocks_under_autocast():
    torch._dynamo.reset()
    eager = build(COMPILED, out_indices=(0, 1)).train()
    compiled = build(COMPILED, out_indices=(0, 1), compile_blocks=dict(backend='aot_eager')).train()
    compiled.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, *SIZE)
    (ref_outs, ref_grads), (outs, grads) = (forward_backward(m, x, torch.bfloat16) for m in (eager, compiled))
    for out, ref in zip(outs, ref_outs):
        assert relative_error(out, ref) < 1e-2
    assert relative_error(grads, ref_grads) < 2e-2


def test_compile_blocks_true_stays_eager_on_cpu_and_says_so(caplog):
    """On a CPU compiled blocks made the step slower (issue 24): True keeps them eager there and logs it at
    construction; a dict of options still compiles (the other tests), and True still compiles on a GPU."""
    from mmengine.logging import MMLogger
    from vt_backbones.compilation import compiles_on
    torch._dynamo.reset()
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    try:
        eager = build(COMPILED, out_indices=(0, 1)).train()
        compiled = build(COMPILED, out_indices=(0, 1), compile_blocks=True).train()
    finally:
        logger.removeHandler(caplog.handler)
    assert 'compile_blocks=True' in caplog.text and 'but cpu, where they stay eager' in caplog.text
    compiled.load_state_dict(eager.state_dict())
    graphs = unique_graphs()
    x = torch.randn(2, 3, *SIZE)
    (ref_outs, ref_grads), (outs, grads) = (forward_backward(m, x, None) for m in (eager, compiled))
    assert unique_graphs() == graphs  # nothing went through dynamo
    torch.testing.assert_close((outs, grads), (ref_outs, ref_grads), rtol=0, atol=0)
    assert compiles_on(True, torch.device('cuda')) and compiles_on({}, torch.device('cpu'))
    assert not compiles_on(True, torch.device('cpu')) and not compiles_on(False, torch.device('cuda'))


def test_compile_blocks_argument_is_checked():
    with pytest.raises(ValueError, match='compile_blocks'):
        build(COMPILED, compile_blocks='yes')


@pytest.mark.slow
def test_inductor_compiled_blocks_equal_eager_and_do_not_recompile_per_size():
    """The real thing, inductor: CoaT-Lite Tiny's blocks (four graphs, one per stage width) in inference."""
    check_compiled_blocks('coat_lite_tiny', {}, train=False)

"""tools/benchmark.py: FLOP counting (incl. the SDPA handle), memory accounting, the CLI and its json.

Nothing here times anything: the benchmark's numbers are ratios from a real run, not assertions.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vt_backbones

from conftest import SMALLEST, load_tool  # SMALLEST: the smallest variant of every family

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'benchmark.py'

bench = load_tool('benchmark')


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except Exception:  # noqa: BLE001
        return False
    return True


# ---- FLOPs ----------------------------------------------------------------------------------------
def test_linear_flops_are_the_textbook_count():
    model = nn.Linear(64, 32)
    # MACs: one per weight per input row; the bias add is not counted (fvcore/mmengine convention).
    assert bench.count_flops(model, (torch.randn(5, 64),)).macs == 5 * 64 * 32


def test_conv_plus_linear_flops_are_the_textbook_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    conv = (8 * 16 * 16) * (3 * 3 * 3)  # output elements x (C_in x kh x kw)
    linear = (8 * 16 * 16) * 10
    assert bench.count_flops(model, (torch.randn(1, 3, 16, 16),)).macs == conv + linear


class ToyAttention(nn.Module):
    """Multi-head self-attention; ``fused`` uses SDPA, otherwise the same maths with explicit matmuls."""

    def __init__(self, dim: int, heads: int, fused: bool) -> None:
        super().__init__()
        self.heads, self.fused = heads, fused
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x, mask=None):
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
            if mask is not None:
                attn = attn + mask
            out = attn.softmax(-1) @ v
        return out.transpose(1, 2).reshape(B, N, C)


@pytest.mark.parametrize('with_mask', [False, True])
def test_sdpa_handle_matches_explicit_matmuls(with_mask):
    B, h, N, d = 2, 3, 10, 8
    x = torch.randn(B, N, h * d)
    mask = torch.randn(N, N) if with_mask else None
    fused, explicit = ToyAttention(h * d, h, fused=True), ToyAttention(h * d, h, fused=False)
    explicit.load_state_dict(fused.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fused(x, mask), explicit(x, mask))  # the same computation
    inputs = (x,) if mask is None else (x, mask)
    fused_count = bench.count_flops(fused, inputs)
    explicit_count = bench.count_flops(explicit, inputs)
    qkv = B * N * (h * d) * (3 * h * d)
    attention = fused_count.macs - qkv
    # Q K^T and A V: B*h*N*N*d multiply-accumulates each, i.e. 2*B*h*N*N*d floating-point operations each.
    assert attention == 2 * (B * h * N * N * d)
    assert fused_count.macs == explicit_count.macs
    assert 'aten::scaled_dot_product_attention' not in fused_count.skipped


def test_without_the_handle_the_counter_skips_sdpa():
    """Why the handle exists: mmengine's (and fvcore's) counter has none for SDPA and counts it as 0."""
    from mmengine.analysis import FlopAnalyzer
    model = ToyAttention(24, 3, fused=True).eval()
    analyzer = FlopAnalyzer(model, (torch.randn(2, 10, 24),))
    analyzer.unsupported_ops_warnings(False)
    analyzer.tracer_warnings('none')
    assert analyzer.total() == 2 * 10 * 24 * 72  # the qkv linear only
    assert 'aten::scaled_dot_product_attention' in analyzer.unsupported_ops()


def test_sdpa_macs_cross_attention_and_extra_batch_dims():
    # [B, nW, heads, Nq, d] queries against Nk keys with dv != d (as Swin's masked windows, 5-D).
    assert bench.sdpa_macs((2, 4, 3, 7, 8), (2, 4, 3, 5, 8), (2, 4, 3, 5, 6)) == 2 * 4 * 3 * 7 * 5 * (8 + 6)

    class Cross(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 4, 3, 7, 8), torch.randn(2, 4, 3, 5, 8), torch.randn(2, 4, 3, 5, 6)
    assert bench.count_flops(Cross(), (q, k, v)).macs == 2 * 4 * 3 * 7 * 5 * (8 + 6)


@pytest.mark.skipif(not _importable('mmdet'), reason='mmdet is not installed')
def test_mmdet_reference_matches_ours_in_params_and_flops():
    """A small Swin at a size that needs no padding: mmdet's explicit-matmul attention and our SDPA
    must count the same FLOPs (this checks the SDPA handle on the real model and the reference mapping)."""
    arch = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    ours = vt_backbones.SwinTransformer(arch=arch, window_size=2, drop_path_rate=0.0)
    opts = bench.BuildOptions(size=(64, 64), drop_path_rate=0.0, with_cp=False)
    ref = bench.build_reference('mmdet', 'swin_t', ours, opts).module
    x = torch.randn(1, 3, 64, 64)
    assert bench.count_params(ref) == bench.count_params(ours)
    ref.eval(), ours.eval()  # (mmdet's train() returns None, so no chaining)
    with torch.no_grad():
        assert [o.shape for o in ref(x)] == [o.shape for o in ours(x)]
    assert bench.count_flops(ours, (x,)).macs == bench.count_flops(ref, (x,)).macs


@pytest.mark.parametrize('name', SMALLEST)
def test_every_family_can_be_counted(name):
    """The counter traces with torch.jit (as mmdet's and mmseg's get_flops tools do), which gives sizes as
    tensors: CrossFormer's small-map rule took only symbolic ints once. 64x96 applies that rule in stage 4;
    doubling both sides must about quadruple the count (windowed attention is linear in the tokens; padding to
    whole windows costs relatively more at the smaller size: Focal's ratio is 3.7)."""
    model = vt_backbones.create_backbone(name, drop_path_rate=0.0).eval()
    small, large = (bench.count_flops(model, (torch.randn(1, 3, H, W),)).macs for H, W in ((64, 96), (128, 192)))
    assert small > 0 and 3.5 < large / small < 6, (small, large)


# ---- memory ---------------------------------------------------------------------------------------
def test_profiler_peak_is_the_exact_live_tensor_peak():
    mb = 2 ** 20
    before = [torch.ones(mb // 4)]  # allocated before the step, freed inside it: must not count

    def step():
        before.clear()
        a = torch.ones(mb // 4)
        b = torch.ones(mb // 4)  # peak: a + b
        del a, b
        c = torch.ones(mb // 8)
        del c

    assert bench.peak_bytes_profiler(step) == 2 * mb


# ---- CLI ------------------------------------------------------------------------------------------
CLI_GEMM = 256  # the roofline's GEMM in the CLI run: big enough to run near the machine's matmul rate, yet ~1 ms


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('bench') / 'result.json'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])),
               THP_MEM_ALLOC_ENABLE='1')
    proc = subprocess.run(
        [sys.executable, str(TOOL), '--size', '64', '--repeat', '1', '--warmup', '0', '--reference', 'none',
         '--gemm-size', str(CLI_GEMM), '--threads', '1', '--clock', 'cpu', 'swin_t',
         '--json', str(out), '--markdown', str(out.with_suffix('.md'))],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


def test_cli_json_is_read_back_into_the_same_output(cli_run, tmp_path, capsys):
    """--from-json prints the run's output again and writes the same markdown, measuring nothing."""
    proc, data = cli_run
    saved = tmp_path / 'saved.json'
    saved.write_text(json.dumps(data))
    markdown, plot = tmp_path / 'again.md', tmp_path / 'again.png'
    assert bench.main(['--from-json', str(saved), '--markdown', str(markdown), '--plot', str(plot)]) == 0
    assert capsys.readouterr().out == proc.stdout + f'# plot: {plot}\n'
    measured_markdown = Path(proc.args[proc.args.index('--markdown') + 1]).read_text()
    assert markdown.read_text() == measured_markdown and data['command'] in measured_markdown
    assert plot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(SystemExit):
        bench.parse_args(['--from-json', str(saved), 'swin_t'])  # nothing is measured: no MODEL
    assert 'unrecognized arguments: swin_t' in capsys.readouterr().err


@pytest.mark.parametrize('text, detail', [('{"results": []}', 'missing env, config, command'), ('[1', 'cannot read')])
def test_from_json_refuses_other_files_naming_the_argument(text, detail, tmp_path, capsys):
    path = tmp_path / 'other.json'
    path.write_text(text)
    with pytest.raises(SystemExit):
        bench.parse_args(['--from-json', str(path)])
    err = capsys.readouterr().err
    assert 'argument --from-json' in err and detail in err


def test_cli_end_to_end_json_fields(cli_run):
    proc, data = cli_run
    assert 'swin_t' in proc.stdout and 'torch' in proc.stdout and 'threads' in proc.stdout
    assert data['env']['torch'] == torch.__version__
    # The allocator's huge pages move single matmuls' speed both ways: the run says whether they were asked for.
    assert data['env']['thp_alloc'] == '1' and 'THP_MEM_ALLOC_ENABLE=1 (kernel THP ' in proc.stdout
    # On CPU the allocator is set as tools/train.py sets it, and the header says so.
    assert data['env']['malloc'] == 'keeps freed memory' and '| malloc: keeps freed memory' in proc.stdout
    assert data['config']['sizes'] == [[64, 64]] and data['config']['reference'] == 'none'
    [result] = data['results']
    assert result['model'] == 'swin_t' and result['ref'] is None and result['ratios'] is None
    ours = result['ours']
    assert ours['gflops'] > 0 and ours['flops'] == round(ours['gflops'] * 1e9)
    assert 'aten::scaled_dot_product_attention' not in ours['flops_skipped_ops']
    for mode in ('fwd', 'fwdbwd'):
        entry = ours[mode]
        assert len(entry['times_ms']) == 1 and entry['median_ms'] > 0
        assert entry['peak_mem_bytes'] > 0 and math.isclose(entry['peak_mem_mb'], entry['peak_mem_bytes'] / 2 ** 20)
    # fwd+bwd keeps the activations for the backward and allocates the gradients.
    assert ours['fwdbwd']['peak_mem_bytes'] > ours['fwd']['peak_mem_bytes']


def test_cli_roofline_is_the_flop_rate_over_the_gemm_rate_of_the_json_fields(cli_run):
    """roofline = (2 MACs x batch x {1 fwd, 3 fwd+bwd}) / median time, over 2 N^3 / median GEMM time, both from the
    raw times in the json; a step of small matmuls and element-wise work cannot beat a GEMM by far."""
    proc, data = cli_run
    ours, batch = data['results'][0]['ours'], data['config']['batch']
    assert data['config']['gemm_size'] == CLI_GEMM
    for mode, passes in (('fwd', 1), ('fwdbwd', 3)):
        entry = ours[mode]
        flops = 2 * ours['flops'] * batch * passes
        gemm_rate = 2 * CLI_GEMM ** 3 / (sorted(entry['gemm_times_ms'])[len(entry['gemm_times_ms']) // 2] / 1e3)
        step_rate = flops / (entry['median_ms'] / 1e3)
        assert math.isclose(entry['roofline'], step_rate / gemm_rate, rel_tol=1e-9)
        assert math.isclose(entry['gflop_per_s'], step_rate / 1e9, rel_tol=1e-9)
        assert 0 < entry['roofline'] <= 1.5, entry
        assert f"{entry['roofline']:.2f}" in proc.stdout
    assert 'fwd+bwd roofline' in proc.stdout


def test_no_gemm_no_roofline():
    subject = bench.Subject('toy', 'test', nn.Linear(2, 2), flops=bench.FlopCount(10, {}), times_ms={'fwd': [1.0]})
    assert 'roofline' not in bench.summarize(subject, ['fwd'], batch=1)['fwd']
    subject.gemm_ms['fwd'] = [2.0, 4.0, 3.0]
    entry = bench.summarize(subject, ['fwd'], batch=2, gemm_size=10)['fwd']
    # 2 x 10 MACs x batch 2 in 1 ms, against 2 x 10^3 FLOPs in 3 ms (the median GEMM time)
    assert math.isclose(entry['roofline'], (40 / 1.0) / (2000 / 3.0))


def test_cli_params_are_the_parameter_count(cli_run):
    _, data = cli_run
    model = vt_backbones.create_backbone('swin_t', drop_path_rate=0.0)
    assert data['results'][0]['ours']['params'] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('argv, argument, detail', [
    (['nope_t'], 'MODEL', 'swin_t'),
    (['swin_t', '--size', '1', '2', '3'], '--size', '3 values'),
    (['swin_t', '--size', '16'], '--size', 'at least 32'),
    (['swin_t', '--size', 'big'], '--size', 'positive integer'),
    (['swin_t', '--repeat', '0'], '--repeat', 'positive integer'),
    (['swin_t', '--reference', 'vit_x'], '--reference', 'mmdet'),
    (['swin_t', '--mode', 'bwd'], '--mode', 'fwdbwd'),
    (['swin_t', '--clock', 'gpu'], '--clock', 'cpu'),
    (['swin_t', '--dtype', 'fp8'], '--dtype', 'bf16'),
    (['swin_t', '--compile', 'maybe'], '--compile', 'both'),
    (['swin_t', '--compile', '--compile-options', '{dynamic: false}'], '--compile-options', 'JSON object'),
    (['swin_t', '--compile', '--compile-options', '[1]'], '--compile-options', 'JSON object'),
    (['swin_t', '--compile-options', '{"dynamic": false}'], '--compile-options', '--compile on'),
    (['swin_t', '--size', '224', '--size', '16'], '--size', 'at least 32'),
])
def test_argument_errors_name_the_argument(argv, argument, detail, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f'argument {argument}' in err and detail in err


@pytest.mark.skipif(_importable('timm'), reason='timm is installed')
def test_timm_reference_without_timm_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['swin_t', '--reference', 'timm'])
    assert 'argument --reference: timm is not importable' in capsys.readouterr().err


PLUGIN = """
import vt_backbones

def build(variant, ours, options):
    assert options.size == (64, 64)
    return vt_backbones.create_backbone('swin_t', drop_path_rate=0.0)

REFERENCE_BUILDERS = {'mine': {'SwinTransformer': build}}
"""


def test_reference_plugin_adds_a_reference(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, 'REFERENCES', dict(bench.REFERENCES))
    plugin = tmp_path / 'my_refs.py'
    plugin.write_text(PLUGIN)
    args = bench.parse_args(['swin_t', '--size', '64', '--reference-plugin', str(plugin), '--reference', 'mine'])
    assert args.reference == 'mine' and args.reference_plugin == [str(plugin)]
    ours = vt_backbones.create_backbone('swin_t')
    ref = bench.build_reference('mine', 'swin_t', ours, bench.BuildOptions((64, 64), 0.0, False))
    assert ref.name == 'mine:swin_t' and bench.count_params(ref.module) == bench.count_params(ours)
    with pytest.raises(SystemExit):  # the plugin has no Focal reference: a parser error, as for any reference
        bench.parse_args(['focal_t', '--reference-plugin', str(plugin), '--reference', 'mine'])


@pytest.mark.parametrize('text, detail', [('X = 1', 'must define REFERENCE_BUILDERS'),
                                          ("REFERENCE_BUILDERS = {'r': {'Swin': None}}", "unknown families ['Swin']")])
def test_reference_plugin_errors_name_the_argument(tmp_path, monkeypatch, text, detail):
    monkeypatch.setattr(bench, 'REFERENCES', dict(bench.REFERENCES))
    plugin = tmp_path / 'bad_refs.py'
    plugin.write_text(text)
    with pytest.raises(SystemExit, match='argument --reference-plugin') as error:
        bench.parse_args(['swin_t', '--reference-plugin', str(plugin)])
    assert detail in str(error.value)


def _official_references():
    spec = importlib.util.spec_from_file_location('official_references', REPO / 'tools' / 'official_references.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_official_references_plugin_covers_the_families_without_an_installed_reference(monkeypatch):
    monkeypatch.setattr(bench, 'REFERENCES', dict(bench.REFERENCES))
    plugin = str(REPO / 'tools' / 'official_references.py')
    for name in ('coat_lite_tiny', 'crossformer_t', 'shuffle_t', 'focal_t'):
        assert bench.parse_args([name, '--reference-plugin', plugin, '--reference', 'official']).reference == 'official'
    monkeypatch.delenv('VT_OFFICIAL_ROOT', raising=False)
    with pytest.raises(RuntimeError, match='set VT_OFFICIAL_ROOT'):
        bench.build_reference('official', 'focal_t', None, bench.BuildOptions((224, 224), 0.0, False))


@pytest.mark.skipif(not os.environ.get('VT_OFFICIAL_ROOT'), reason='no official checkouts (VT_OFFICIAL_ROOT)')
@pytest.mark.parametrize('name', ['coat_lite_tiny', 'coat_tiny', 'crossformer_t', 'shuffle_t'])
def test_official_reference_with_our_converted_weights_gives_our_outputs(name):
    """Where the official code is at hand: its random weights, converted by our converter, make our model compute
    its outputs (at 224x224, where the official dense code needs no padding)."""
    from vt_backbones.convert import convert_state_dict
    opts = bench.BuildOptions((224, 224), 0.0, False)
    official = getattr(_official_references(), family_key(name))(name, None, opts).eval()
    ours = vt_backbones.create_backbone(name, drop_path_rate=0.0).eval()
    state, _ = convert_state_dict(official.model.state_dict(), ours)
    assert not ours.load_state_dict(state, strict=False).unexpected_keys  # ours' own additions keep their init
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for out, ref in zip(ours(x), official(x)):
            torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def family_key(name: str) -> str:
    return next(key for key in ('coat', 'crossformer', 'shuffle') if name.startswith(key))


def test_json_is_written_atomically(tmp_path):
    path = tmp_path / 'out.json'
    path.write_text('old')
    bench.write_json_atomic(str(path), {'a': 1})
    assert json.loads(path.read_text()) == {'a': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['out.json']  # no temporary left behind


def test_table_has_ratio_columns_with_two_decimals():
    entry = {'name': 'swin_t', 'params_m': 27.5, 'gflops': 4.5,
             'fwd': {'median_ms': 10.0, 'peak_mem_mb': 5.0}}
    ref = dict(entry, name='mmdet:swin_t')
    table = bench.format_table([{'ours': entry, 'ref': ref,
                                 'ratios': {'fwd_time': 1.23456, 'fwd_mem': 0.5}}], ['fwd'])
    assert '1.23' in table and '0.50' in table and '1.234' not in table
    assert bench.paired_ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0]) == 2.0  # median of 2, 1, 3


# ---- settings, several sizes, markdown, plot ---------------------------------------------------------
def test_settings_are_the_product_of_dtypes_and_compilation_in_table_order():
    args = bench.parse_args(['swin_t', '--dtype', 'fp32', 'bf16', '--compile', 'both'])
    assert [s.label for s in bench.settings_of(args)] == ['fp32', 'bf16', 'compiled', 'bf16+compiled']
    assert [s.label for s in bench.settings_of(bench.parse_args(['swin_t', '--compile']))] == ['compiled']
    assert [s.label for s in bench.settings_of(bench.parse_args(['swin_t']))] == ['fp32']


def test_compile_options_become_the_compiled_models_compile_blocks_and_the_header_says_them():
    argv = ['swin_t', '--compile', 'both', '--compile-options', '{"dynamic": false}']
    args = bench.parse_args(argv)
    opts = bench.BuildOptions(size=(64, 64), drop_path_rate=0.0, with_cp=False, compile_options=args.compile_options)
    assert bench.build_ours('swin_t', opts, compiled=True).compile_blocks == {'dynamic': False}
    assert bench.build_ours('swin_t', opts).compile_blocks is False
    default = bench.parse_args(['swin_t', '--compile']).compile_options
    assert default == {} and bench.build_ours('swin_t', bench.BuildOptions((64, 64), 0.0, False), True).compile_blocks == {}
    config = dict(sizes=[[64, 64]], batch=1, settings=['fp32', 'compiled'], warmup=1, repeat=1, clock='cpu', mode='fwd',
                  with_cp=False, memory_method='none', reference='none', compile_options=args.compile_options)
    env = bench.environment(args, torch.device('cpu'))
    assert "ours: fp32, compiled (compile_blocks={'dynamic': False})" in bench.format_header(env, config)
    assert 'compile_blocks' not in bench.format_header(env, {**config, 'settings': ['fp32']})


def test_several_sizes_are_kept_in_order_without_duplicates():
    args = bench.parse_args(['swin_t', '--size', '224', '--size', '96', '128', '--size', '224'])
    assert args.sizes == [(224, 224), (96, 128)]
    assert bench.parse_args(['swin_t']).sizes == [(224, 224)]


def test_auto_reference_is_an_installed_reference_of_the_family_else_our_model():
    expected = 'mmdet' if _importable('mmdet') else 'mmseg' if _importable('mmseg') else 'swin_t'
    assert bench.resolve_reference('auto', 'swin_t') == expected
    assert bench.resolve_reference('auto', 'crossformer_t') == 'crossformer_t'  # no installed reference
    assert bench.resolve_reference('none', 'swin_t') == 'none'


def test_autocast_step_runs_the_forward_in_the_dtype_and_the_backward_outside():
    model = nn.Linear(8, 4)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((o.dtype, torch.is_autocast_enabled('cpu'))))
    x = torch.randn(3, 8)

    class Pair(nn.Module):  # the backbone contract: a tuple of maps
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return (self.inner(x),)

    bench.make_step(Pair(), 'fwdbwd', x, torch.bfloat16)()
    assert seen == [(torch.bfloat16, True)] and model.weight.grad.dtype == torch.float32
    bench.make_step(Pair(), 'fwd', x)()
    assert seen[-1] == (torch.float32, False)


def _result(model, size, setting, time_ratio, mem_ratio, reference='mmdet'):
    # roofline: the same FLOPs in time_ratio x the reference's time, against a GEMM twice as fast in bf16
    gemm_speedup = 2.0 if setting.startswith('bf16') else 1.0
    entry = {'name': model, 'params_m': 1.0, 'gflops': 1.0,
             'fwdbwd': {'median_ms': 10.0 * time_ratio, 'peak_mem_mb': 5.0 * mem_ratio,
                        'roofline': 0.48 / time_ratio / gemm_speedup}}
    ref = {'name': f'{reference}:{model}', 'source': f'{reference} SwinTransformer', 'params_m': 1.0, 'gflops': 1.0,
           'fwdbwd': {'median_ms': 10.0, 'peak_mem_mb': 5.0, 'roofline': 0.48}}
    return {'model': model, 'size': list(size), 'setting': setting, 'reference': reference, 'compile_s': {},
            'ours': entry, 'ref': ref, 'ratios': {'fwdbwd_time': time_ratio, 'fwdbwd_mem': mem_ratio}}


CONFIG = {'batch': 2, 'threads': 1, 'clock': 'cpu', 'repeat': 5, 'memory_method': 'tensor bytes'}


def test_markdown_table_has_one_row_per_model_and_size_and_two_columns_per_setting():
    results = [_result('swin_t', (224, 224), 'fp32', 0.98, 1.0), _result('swin_t', (224, 224), 'bf16', 0.51, 0.6),
               _result('swin_t', (512, 512), 'fp32', 0.9, 0.99), _result('swin_t', (512, 512), 'bf16', 0.5, 0.61),
               _result('gg_t', (224, 224), 'fp32', 1.0, 1.0, reference='gg_t')]
    text = bench.format_markdown(results, ['fwdbwd'], CONFIG, 'python tools/benchmark.py swin_t gg_t')
    lines = text.splitlines()
    assert '`python tools/benchmark.py swin_t gg_t`' in lines[0] and 'fwd+bwd' in lines[0]
    assert lines[2] == ('| model | size | reference | fp32 time | fp32 memory | fp32 roofline '
                        '| bf16 time | bf16 memory | bf16 roofline | reference roofline |')
    rows = [line for line in lines[4:] if line]
    assert rows[0] == ('| swin_t | 224×224 | mmdet SwinTransformer | 0.98× | 1.00× | 0.49 '
                       '| 0.51× | 0.60× | 0.47 | 0.48 |')
    assert rows[1].startswith('| swin_t | 512×512 |') and rows[2].startswith('| gg_t | 224×224 | ours fp32')
    assert rows[2].endswith('| 1.00× | 1.00× | 0.48 | - | - | - | 0.48 |')  # a setting not measured for a model


def test_markdown_table_gives_compiled_settings_their_compile_seconds():
    compiled = {**_result('swin_t', (224, 224), 'compiled', 1.02, 1.0), 'compiled': True, 'compile_s': {'fwdbwd': 93.4}}
    results = [_result('swin_t', (224, 224), 'fp32', 0.98, 1.0), compiled,
               _result('swin_t', (512, 512), 'fp32', 0.9, 0.99)]
    lines = bench.format_markdown(results, ['fwdbwd'], CONFIG, 'python tools/benchmark.py swin_t').splitlines()
    assert lines[2] == ('| model | size | reference | fp32 time | fp32 memory | fp32 roofline | compiled time '
                        '| compiled memory | compiled roofline | compiled compile s | reference roofline |')
    assert lines[4].endswith('| 1.02× | 1.00× | 0.47 | 93 | 0.48 |')
    assert lines[5].endswith('| 0.90× | 0.99× | 0.53 | - | - | - | - | 0.48 |')


def test_plot_is_a_png_written_atomically(tmp_path):
    results = [_result('swin_t', (224, 224), 'fp32', 1.0, 1.0), _result('swin_t', (512, 512), 'fp32', 5.0, 5.0)]
    path = tmp_path / 'scaling.png'
    bench.plot_scaling(results, ['fwdbwd'], str(path))
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert [p.name for p in tmp_path.iterdir()] == ['scaling.png']


def test_plot_argument_must_name_a_png(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['swin_t', '--plot', 'out.svg'])
    assert 'argument --plot' in capsys.readouterr().err

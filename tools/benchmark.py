"""Benchmark vt_backbones against a reference implementation, as ratios measured in the same process.

    python tools/benchmark.py MODEL [MODEL ...] [--size H W | --size S] [--batch B] [--repeat N]
        [--warmup K] [--threads T] [--reference mmdet|mmseg|timm|none|<one of our models>]
        [--with-cp] [--mode fwd|fwdbwd|both] [--memory profiler|rss|none] [--clock wall|cpu]
        [--device cpu|cuda] [--json OUT]

For every MODEL the tool reports parameters, FLOPs at the given size, the median forward time (eval,
``torch.no_grad``), the median forward+backward time (train mode, ``sum(out.sum()).backward()``), the
peak memory of each, and the ratios ours / reference. Absolute times depend on the machine; the
ratios are the result: ours and the reference run interleaved in the same process (repeat ``i`` runs
ours then the reference when ``i`` is even, the reference then ours when odd), so machine noise and
drift hit both, and the time ratio is the median of the per-repeat ratios of adjacent runs.
``--reference swin_t`` with ``swin_t`` gives an A/A run: how far from 1.00 noise alone moves a ratio.
On a machine shared with other jobs, ``--threads 1 --clock cpu`` (CPU time of the process) is far
less noisy than wall time with several threads, whose OpenMP barriers stall whenever one thread is
descheduled.

FLOPs
    Counted by mmengine's ``FlopAnalyzer`` (the class behind ``mmengine.analysis.
    get_model_complexity_info``; a port of fvcore's ``FlopCountAnalysis`` with the same handles) on a
    traced forward of one image. Convention: one multiply-accumulate counts as one "FLOP", as in
    fvcore, mmengine and the Swin paper (Swin-T's "4.5G FLOPs" are 4.5 GMACs); true floating-point
    operations are about twice that (``gflops`` in the table; ``true_gflops`` = 2x in the json).
    Neither counter has a handle for ``aten::scaled_dot_product_attention``: a model that uses the
    fused attention would silently lose its two attention matmuls (and ``get_model_complexity_info``
    offers no way to add one). `count_flops` adds `sdpa_flop_jit` through the counter's extension
    point ``set_op_handle`` for SDPA and its backend variants: ``B*heads*Nq*Nk*d`` for ``Q K^T`` plus
    ``B*heads*Nq*Nk*dv`` for ``A V``, in MACs, exactly what the counter gives the same computation
    written with ``torch.matmul`` (``2*B*h*Nq*Nk*d`` per matmul in true FLOPs). Scaling, masking and
    softmax are not counted (element-wise, as the counter does for explicit code); causal masking is
    not discounted. Operators the counter skips are listed under the table.

Memory (peak above the state before the step: parameters and the input are not counted; outputs,
activations, workspaces and, for fwd+bwd, the parameter gradients, set to None before each step, are)
    cuda: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
        allocated before the step.
    profiler (default on CPU): one extra, untimed step under ``torch.profiler`` with
        ``profile_memory=True``. PyTorch's CPU allocator reports every tensor allocation and free
        (pointer, size) to the profiler; replaying them in order gives the exact peak of live tensor
        bytes, the CPU analogue of ``max_memory_allocated``. Deterministic, independent of timing
        noise and of other threads. It does not see memory that libraries allocate behind PyTorch's
        allocator (BLAS packing buffers, oneDNN scratch: small next to the activations) nor malloc's
        overhead.
    rss: peak resident set size (sampled every 0.5 ms by a thread) minus the RSS before the step.
        What the OS sees, but not sound for comparisons: glibc keeps freed heap memory (so a step
        after another may need no new pages and read ~0), short peaks fall between samples, and
        page-granular growth mixes in unrelated allocations. Offered as a cross-check only.
    (``tracemalloc`` sees Python objects only, not tensor storage.)

References come from the table `REFERENCES` (reference name -> family class name -> builder), which
later families extend with one entry per installed reference implementation.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

import vt_backbones

MODES = ('fwd', 'fwdbwd')
MODE_LABELS = {'fwd': 'fwd', 'fwdbwd': 'fwd+bwd'}
MIN_SIZE = 32

# ---- FLOP counting ------------------------------------------------------------------------------
#: The fused attention operator and the backend variants it dispatches to, all ``(q, k, v, ...)`` with
#: ``q: [..., Nq, d]``, ``k: [..., Nk, d]``, ``v: [..., Nk, dv]``.
SDPA_OPS = (
    'aten::scaled_dot_product_attention',
    'aten::_scaled_dot_product_attention_math',
    'aten::_scaled_dot_product_flash_attention',
    'aten::_scaled_dot_product_flash_attention_for_cpu',
    'aten::_scaled_dot_product_efficient_attention',
    'aten::_scaled_dot_product_cudnn_attention',
    'aten::_scaled_dot_product_fused_attention_overrideable',
)


def sdpa_macs(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """Multiply-accumulates of ``softmax(q k^T) v``: ``Q K^T`` (batch*Nq*Nk*d) plus ``A V`` (batch*Nq*Nk*dv).

    The batch is ``q``'s leading dimensions (the output's; ``k``/``v`` broadcast to it, or hold fewer
    heads with grouped-query attention).
    """
    *batch, nq, d = q_shape
    nk, dv = k_shape[-2], v_shape[-1]
    return math.prod(batch) * nq * nk * (d + dv)


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """FlopAnalyzer/fvcore handle for `SDPA_OPS` (MAC convention, see the module docstring)."""
    from mmengine.analysis.jit_handles import get_shape
    shapes = [get_shape(value) for value in inputs[:3]]
    if any(shape is None for shape in shapes):
        raise ValueError(f'scaled_dot_product_attention with an input of unknown shape: {shapes}')
    return sdpa_macs(*shapes)


@dataclass
class FlopCount:
    macs: int
    skipped: dict[str, int]  # operators the counter has no handle for -> number of calls


def count_flops(model: nn.Module, inputs: tuple[Any, ...]) -> FlopCount:
    """MACs of ``model(*inputs)`` (eval, no grad) with mmengine's FlopAnalyzer plus the SDPA handle."""
    from mmengine.analysis import FlopAnalyzer
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # TracerWarnings about shape-dependent Python control flow
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.set_op_handle(**{op: sdpa_flop_jit for op in SDPA_OPS})
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            macs = int(analyzer.total())
            skipped = dict(sorted(analyzer.unsupported_ops().items()))
    finally:
        model.train(was_training)
    return FlopCount(macs, skipped)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- references ---------------------------------------------------------------------------------
@dataclass
class BuildOptions:
    size: tuple[int, int]
    drop_path_rate: float
    with_cp: bool


class FeaturesAsNCHW(nn.Module):
    """Wraps a feature extractor into the NCHW tuple contract, converting channels-last maps (as
    ours are contiguous NCHW, so that both do the same work)."""

    def __init__(self, inner: nn.Module, channels: Sequence[int], fmt: str | None) -> None:
        super().__init__()
        self.inner = inner
        self.channels = tuple(channels)
        self.fmt = fmt  # 'NCHW' / 'NHWC' when the extractor says, else decided from the shapes

    def _is_nhwc(self, f: Tensor, channels: int) -> bool:
        if self.fmt is not None:
            return self.fmt == 'NHWC'
        return f.shape[-1] == channels and f.shape[1] != channels

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(f.permute(0, 3, 1, 2).contiguous() if self._is_nhwc(f, c) else f
                     for f, c in zip(self.inner(x), self.channels))


def _swin_config(ours: nn.Module) -> dict[str, Any]:
    """The hyper-parameters of one of our SwinTransformer instances, read from ``arch`` and from the
    parameters under their checkpoint names (stable, the weight converter relies on them), not from
    module internals."""
    params = dict(ours.named_parameters())
    block = 'layers.0.blocks.0.'
    table_rows = params[block + 'attn.relative_position_bias_table'].shape[0]  # (2 * window - 1) ** 2
    window = (math.isqrt(table_rows) + 1) // 2
    fc1 = params[block + 'mlp.fc1.weight']  # [hidden, dim]
    return dict(embed_dims=ours.arch['embed_dims'], depths=tuple(ours.arch['depths']),
                num_heads=tuple(ours.arch['num_heads']), window_size=window,
                mlp_ratio=fc1.shape[0] / fc1.shape[1], qkv_bias=block + 'attn.qkv.bias' in params,
                out_indices=tuple(ours.out_indices))


def _openmmlab_swin(module: str) -> Callable[[str, nn.Module, BuildOptions], nn.Module]:
    """mmdet's / mmseg's ``SwinTransformer`` (the same code in both) with our model's configuration."""

    def build(variant: str, ours: nn.Module, opts: BuildOptions) -> nn.Module:
        import importlib
        cls = importlib.import_module(module).SwinTransformer
        cfg = _swin_config(ours)
        mlp_ratio = cfg.pop('mlp_ratio')
        return cls(**cfg, mlp_ratio=int(mlp_ratio) if float(mlp_ratio).is_integer() else mlp_ratio,
                   drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=opts.drop_path_rate,
                   with_cp=opts.with_cp, init_cfg=None)

    return build


_TIMM_SWIN = {'swin_t': 'swin_tiny_patch4_window7_224', 'swin_s': 'swin_small_patch4_window7_224',
              'swin_b': 'swin_base_patch4_window7_224', 'swin_l': 'swin_large_patch4_window7_224'}


def _timm_swin(variant: str, ours: nn.Module, opts: BuildOptions) -> nn.Module:
    import timm
    if variant not in _TIMM_SWIN:
        raise KeyError(f'no timm model mapped for {variant!r} (known: {sorted(_TIMM_SWIN)})')
    model = timm.create_model(_TIMM_SWIN[variant], pretrained=False, features_only=True,
                              out_indices=tuple(ours.out_indices), img_size=opts.size,
                              drop_path_rate=opts.drop_path_rate)
    if opts.with_cp:
        model.set_grad_checkpointing(True)
    fmt = getattr(model, 'output_fmt', None)  # timm >= 0.9 feature wrappers; Swin's are often NHWC
    fmt = str(getattr(fmt, 'value', fmt)) if fmt is not None else None
    return FeaturesAsNCHW(model, model.feature_info.channels(), fmt if fmt in ('NCHW', 'NHWC') else None)


def _mmseg_twins(variant: str, ours: nn.Module, opts: BuildOptions) -> nn.Module:
    """mmseg's ``PCPVT`` / ``SVT`` with our model's configuration (mmseg spells one argument ``windiow_sizes``)."""
    from mmseg.models.backbones import PCPVT, SVT
    if opts.with_cp:
        raise ValueError("mmseg's Twins has no with_cp")
    a = ours.arch
    kw = dict(embed_dims=list(a['embed_dims']), num_heads=list(a['num_heads']), mlp_ratios=list(a['mlp_ratios']),
              depths=list(a['depths']), sr_ratios=list(a['sr_ratios']), qkv_bias=True, drop_rate=0.0,
              attn_drop_rate=0.0, drop_path_rate=opts.drop_path_rate, out_indices=tuple(ours.out_indices))
    if type(ours).__name__ == 'SVT':
        return SVT(**kw, windiow_sizes=list(a['window_sizes']), norm_after_stage=True)
    return PCPVT(**kw, norm_after_stage=False)


@dataclass
class ReferenceSource:
    package: str  # import name: the reference exists only if it imports
    builders: dict[str, Callable[[str, nn.Module, BuildOptions], nn.Module]]  # family class name -> builder
    note: str = ''


#: reference name -> where it comes from and, per family, how to build the counterpart of our model.
REFERENCES: dict[str, ReferenceSource] = {
    'mmdet': ReferenceSource('mmdet', {'SwinTransformer': _openmmlab_swin('mmdet.models.backbones')}),
    'mmseg': ReferenceSource('mmseg', {'SwinTransformer': _openmmlab_swin('mmseg.models.backbones'),
                                       'PCPVT': _mmseg_twins, 'SVT': _mmseg_twins}),
    'timm': ReferenceSource('timm', {'SwinTransformer': _timm_swin},
                            note='pip install timm (it pulls torchvision, so install it only where that is wanted)'),
}


def package_version(package: str) -> str | None:
    """The package's version if it imports, else None."""
    try:
        module = __import__(package)
    except Exception:  # noqa: BLE001  a broken install counts as missing
        return None
    return str(getattr(module, '__version__', 'unknown'))


# ---- memory -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Drops the log lines that the profiler's C++ side writes to fd 2 at every start/stop (and the
    allocator's expected warning about frees of blocks allocated before profiling); keeps the rest."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors='replace').splitlines(keepends=True)
                    if not line.startswith(('USDT:', 'INFO:')) and 'Memory block of unknown size' not in line]
            if kept:
                sys.stderr.write(''.join(kept))
                sys.stderr.flush()


def _walk(event: Any) -> Iterator[Any]:
    stack = [event]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def peak_bytes_profiler(step: Callable[[], None]) -> int:
    """Peak of live tensor bytes allocated (and not yet freed) during ``step``, from the profiler's
    allocation events: frees of blocks allocated before the step are ignored."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    with _filtered_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for root in prof.profiler.kineto_results.experimental_event_tree() for e in _walk(root)
              if e.tag == _EventType.Allocation and e.extra_fields.device.type == 'cpu']
    events.sort(key=lambda e: e.start_time_ns)  # stable: ties keep the recorded order
    live: dict[int, int] = {}
    current = peak = 0
    for event in events:
        fields = event.extra_fields
        if fields.alloc_size > 0:
            live[fields.ptr] = fields.alloc_size
            current += fields.alloc_size
            peak = max(peak, current)
        else:
            current -= live.pop(fields.ptr, 0)
    return peak


def _rss() -> int:
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _malloc_trim() -> None:
    """Returns glibc's free heap pages to the OS so the RSS baseline is as low as it gets."""
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_bytes_rss(step: Callable[[], None], interval: float = 0.0005) -> int:
    """Peak RSS increase during ``step``, sampled by a thread (a cross-check, see the module docstring)."""
    _malloc_trim()
    base = _rss()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss())
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        step()
    finally:
        stop.set()
        sampler.join()
    return max(peak, _rss()) - base


def peak_bytes_cuda(step: Callable[[], None], device: torch.device) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def measure_peak(step: Callable[[], None], method: str, device: torch.device) -> int | None:
    gc.collect()
    if device.type == 'cuda':
        return peak_bytes_cuda(step, device)
    if method == 'profiler':
        return peak_bytes_profiler(step)
    if method == 'rss':
        return peak_bytes_rss(step)
    return None


# ---- timing -------------------------------------------------------------------------------------
@dataclass
class Subject:
    """One model under test: ours or the reference."""
    name: str
    source: str
    module: nn.Module
    params: int = 0
    flops: FlopCount | None = None
    times_ms: dict[str, list[float]] = field(default_factory=dict)
    peak_bytes: dict[str, int | None] = field(default_factory=dict)


def make_step(module: nn.Module, mode: str, x: Tensor) -> Callable[[], None]:
    """The measured unit: forward under no_grad, or forward plus backward of the sum of all outputs
    (gradients set to None first, so their allocation is part of every step, as in training)."""
    if mode == 'fwd':
        def step() -> None:
            with torch.no_grad():
                module(x)
    else:
        def step() -> None:
            module.zero_grad(set_to_none=True)
            outs = module(x)
            torch.stack([out.sum() for out in outs]).sum().backward()
    return step


def set_mode(module: nn.Module, mode: str) -> None:
    module.train(mode == 'fwdbwd')


CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def time_interleaved(subjects: list[Subject], mode: str, x: Tensor, repeat: int, warmup: int,
                     device: torch.device, clock: str = 'wall') -> None:
    """Runs every subject ``warmup + repeat`` times, alternating the order (AB, BA, AB, ...)."""
    now = CLOCKS[clock]
    for subject in subjects:
        set_mode(subject.module, mode)
    steps = [make_step(s.module, mode, x) for s in subjects]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    times: list[list[float]] = [[] for _ in subjects]
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collection pauses inside a timed step
    try:
        for i in range(warmup + repeat):
            order = range(len(subjects)) if i % 2 == 0 else reversed(range(len(subjects)))
            for j in order:
                sync()
                start = now()
                steps[j]()
                sync()
                elapsed = (now() - start) * 1e3
                if i >= warmup:
                    times[j].append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    for subject, subject_times in zip(subjects, times):
        subject.times_ms[mode] = subject_times


def paired_ratio(ours: list[float], ref: list[float]) -> float:
    """Median over repeats of ours/reference of the two runs of that repeat."""
    return statistics.median(a / b for a, b in zip(ours, ref))


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method='inclusive')
    return q[2] - q[0]


# ---- the run ------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    env = {
        'torch': torch.__version__,
        'python': platform.python_version(),
        'vt_backbones': getattr(vt_backbones, '__version__', 'unknown'),
        'threads': torch.get_num_threads(),
        'cpu': cpu_name(),
        'cpu_count': os.cpu_count(),
        'device': str(device),
        'gpu': torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
        'mkldnn': torch.backends.mkldnn.is_available(),
    }
    if args.reference in REFERENCES:
        env[REFERENCES[args.reference].package] = package_version(REFERENCES[args.reference].package)
    return env


def build_ours(name: str, opts: BuildOptions) -> nn.Module:
    torch.manual_seed(0)
    return vt_backbones.create_backbone(name, drop_path_rate=opts.drop_path_rate, with_cp=opts.with_cp)


def build_reference(reference: str, name: str, ours: nn.Module, opts: BuildOptions) -> Subject | None:
    torch.manual_seed(0)
    if reference == 'none':
        return None
    if reference in REFERENCES:
        family = vt_backbones.family_of(name).__name__
        module = REFERENCES[reference].builders[family](name, ours, opts)
        return Subject(f'{reference}:{name}', f'{reference} {type(module).__name__}', module)
    return Subject(f'ours:{reference}', 'vt_backbones', build_ours(reference, opts))


def summarize(subject: Subject, modes: Sequence[str], batch: int) -> dict[str, Any]:
    flops = subject.flops
    out: dict[str, Any] = {
        'name': subject.name,
        'source': subject.source,
        'params': subject.params,
        'params_m': subject.params / 1e6,
        'flops': flops.macs,
        'gflops': flops.macs / 1e9,
        'true_gflops': 2 * flops.macs / 1e9,
        'flops_unit': 'multiply-accumulates per image (fvcore/mmengine convention, as the Swin paper)',
        'flops_skipped_ops': flops.skipped,
    }
    for mode in modes:
        times = subject.times_ms[mode]
        peak = subject.peak_bytes.get(mode)
        out[mode] = {
            'times_ms': times,
            'median_ms': statistics.median(times),
            'min_ms': min(times),
            'iqr_ms': _iqr(times),
            'images_per_s': 1e3 * batch / statistics.median(times),
            'peak_mem_bytes': peak,
            'peak_mem_mb': None if peak is None else peak / 2 ** 20,
        }
    return out


def ratios(ours: dict[str, Any], ref: dict[str, Any], subjects: list[Subject],
           modes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {'params': ours['params'] / ref['params'], 'flops': ours['flops'] / ref['flops']}
    for mode in modes:
        ours_times, ref_times = (s.times_ms[mode] for s in subjects)
        out[f'{mode}_time'] = paired_ratio(ours_times, ref_times)
        per_repeat = [a / b for a, b in zip(ours_times, ref_times)]
        out[f'{mode}_time_iqr'] = _iqr(per_repeat)
        out[f'{mode}_time_of_medians'] = ours[mode]['median_ms'] / ref[mode]['median_ms']
        a, b = ours[mode]['peak_mem_bytes'], ref[mode]['peak_mem_bytes']
        out[f'{mode}_mem'] = None if a is None or not b else a / b
    return out


def benchmark_one(name: str, args: argparse.Namespace, device: torch.device, log: Callable[[str], None]) -> dict:
    H, W = args.size
    opts = BuildOptions(size=(H, W), drop_path_rate=0.0, with_cp=args.with_cp)
    ours = Subject(name, 'vt_backbones', build_ours(name, opts))
    try:
        ref = build_reference(args.reference, name, ours.module, opts)
    except Exception as exc:
        raise SystemExit(f'error: could not build the {args.reference} reference for {name}: '
                         f'{type(exc).__name__}: {exc}') from exc
    subjects = [ours] + ([ref] if ref is not None else [])
    modes = MODES if args.mode == 'both' else (args.mode,)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, H, W, device=device)
    for subject in subjects:
        subject.module.to(device)
        subject.params = count_params(subject.module)
        log(f'[{name}] counting FLOPs of {subject.name}')
        subject.flops = count_flops(subject.module, (torch.randn(1, 3, H, W, device=device),))
    for mode in modes:
        log(f'[{name}] timing {MODE_LABELS[mode]}: {args.warmup} warmup + {args.repeat} repeats, interleaved')
        time_interleaved(subjects, mode, x, args.repeat, args.warmup, device, args.clock)
        for subject in subjects:
            set_mode(subject.module, mode)
            subject.peak_bytes[mode] = measure_peak(make_step(subject.module, mode, x), args.memory, device)
    result = {'model': name, 'reference': None if ref is None else args.reference,
              'ours': summarize(ours, modes, args.batch),
              'ref': None if ref is None else summarize(ref, modes, args.batch)}
    result['ratios'] = None if ref is None else ratios(result['ours'], result['ref'], subjects, modes)
    return result


# ---- output -------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def format_table(results: list[dict], modes: Sequence[str]) -> str:
    header = ['model', 'params(M)', 'GFLOPs']
    for mode in modes:
        header += [f'{MODE_LABELS[mode]} ms', f'{MODE_LABELS[mode]} MB']
    with_ref = any(r['ref'] is not None for r in results)
    if with_ref:
        for mode in modes:
            header += [f'{MODE_LABELS[mode]} time x', f'{MODE_LABELS[mode]} mem x']
    rows = []
    for result in results:
        for key in ('ours', 'ref'):
            entry = result[key]
            if entry is None:
                continue
            row = [entry['name'] if key == 'ours' else '  ' + entry['name'],
                   _fmt(entry['params_m'], 2), _fmt(entry['gflops'], 3)]
            for mode in modes:
                row += [_fmt(entry[mode]['median_ms'], 1), _fmt(entry[mode]['peak_mem_mb'], 1)]
            if with_ref:
                r = result['ratios'] if key == 'ours' else None
                for mode in modes:
                    row += ['', ''] if r is None else [_fmt(r[f'{mode}_time'], 2), _fmt(r[f'{mode}_mem'], 2)]
            rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ['  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    return '\n'.join(lines)


def format_header(env: dict[str, Any], config: dict[str, Any]) -> str:
    H, W = config['size']
    refs = [f'{k} {v}' for k, v in env.items() if k in {s.package for s in REFERENCES.values()}]
    lines = [
        f"# torch {env['torch']} | threads {env['threads']} | {env['device']}: "
        f"{env['gpu'] or env['cpu']} ({env['cpu_count']} logical CPUs)" + ''.join(f' | {r}' for r in refs),
        f"# input {config['batch']}x3x{H}x{W} | warmup {config['warmup']} + repeat {config['repeat']} "
        f"({config['clock']} clock), "
        f"ours and reference interleaved (AB, BA, ...) | mode {config['mode']} | with_cp {config['with_cp']} "
        f"| drop_path_rate 0",
        '# ms: median per step (fwd: eval + no_grad; fwd+bwd: train, sum of outputs backward). '
        'MB: peak memory above the start of the step, ' + config['memory_method'] + '.',
        '# GFLOPs: per image, multiply-accumulates (fvcore/mmengine convention, as the Swin paper), SDPA '
        'counted by our handle.',
    ]
    if config['reference'] != 'none':
        lines.append('# x: ours / reference (time: median of per-repeat ratios; mem: ratio of peaks).')
    return '\n'.join(lines)


def format_notes(results: list[dict]) -> str:
    notes = []
    for result in results:
        for key in ('ours', 'ref'):
            entry = result[key]
            if entry and entry['flops_skipped_ops']:
                ops = ', '.join(f'{op.removeprefix("aten::")} x{n}' for op, n in entry['flops_skipped_ops'].items())
                notes.append(f"# {entry['name']}: not counted (no handle, element-wise or data movement): {ops}")
    return '\n'.join(notes)


def write_json_atomic(path: str, data: Any) -> None:
    """Writes to a temporary file next to ``path``, then renames it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---- arguments ----------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}')
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text!r}')
    return value


def build_parser() -> argparse.ArgumentParser:
    models = vt_backbones.list_models()
    parser = argparse.ArgumentParser(
        description='Params, FLOPs, time and peak memory of vt_backbones models, as ratios against a '
                    'reference run interleaved in the same process.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('models', nargs='+', metavar='MODEL', choices=models,
                        help=f'models to benchmark, from: {", ".join(models)}')
    parser.add_argument('--size', nargs='+', type=_positive_int, default=[224], metavar='S',
                        help=f'input size: H W, or S for S x S (at least {MIN_SIZE})')
    parser.add_argument('--batch', type=_positive_int, default=1, help='batch size of the timed steps')
    parser.add_argument('--repeat', type=_positive_int, default=10, help='timed steps per model and mode')
    parser.add_argument('--warmup', type=_non_negative_int, default=2, help='untimed steps first')
    parser.add_argument('--threads', type=_positive_int, default=None,
                        help='torch intra-op threads (default: torch\'s choice)')
    parser.add_argument('--reference', default='mmdet', metavar='REF',
                        choices=[*REFERENCES, 'none', *models],
                        help=f'what the ratios are against: {", ".join(REFERENCES)}, none, or one of our models')
    parser.add_argument('--with-cp', action='store_true', help='activation checkpointing (ours and the reference)')
    parser.add_argument('--mode', choices=['fwd', 'fwdbwd', 'both'], default='both')
    parser.add_argument('--memory', choices=['profiler', 'rss', 'none'], default='profiler',
                        help='how peak memory is measured on CPU (CUDA always uses max_memory_allocated)')
    parser.add_argument('--clock', choices=list(CLOCKS), default='wall',
                        help='wall: elapsed time; cpu: CPU time of this process (all threads), which other '
                             'processes on a shared machine do not inflate; use it with --threads 1, since with '
                             'more threads it also counts the threads\' spin-waiting')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--json', metavar='OUT', help='also write the results to this json file (atomically)')
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.size) > 2:
        parser.error(f'argument --size: expected H W or a single S, got {len(args.size)} values')
    args.size = tuple(args.size) * 2 if len(args.size) == 1 else tuple(args.size)
    if min(args.size) < MIN_SIZE:
        parser.error(f'argument --size: H and W must be at least {MIN_SIZE}, got {args.size[0]} {args.size[1]}')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('argument --device: cuda requested but torch.cuda.is_available() is False')
    if args.device == 'cuda' and args.clock == 'cpu':
        parser.error('argument --clock: cpu time does not measure GPU work; use wall with --device cuda')
    if args.reference in REFERENCES:
        source = REFERENCES[args.reference]
        if package_version(source.package) is None:
            hint = f' ({source.note})' if source.note else ''
            parser.error(f'argument --reference: {args.reference} is not importable in this environment{hint}; '
                         f'use another reference, none, or one of our models')
        for name in args.models:
            family = vt_backbones.family_of(name).__name__
            if family not in source.builders:
                have = sorted(r for r, s in REFERENCES.items() if family in s.builders)
                known = (f'known references for {family}: {", ".join(have)}' if have else
                         f'REFERENCES in tools/benchmark.py has no entry for {family} yet')
                parser.error(f'argument --reference: no {args.reference} reference for {name} ({family}); '
                             f'{known}; or use --reference none or one of our models')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    memory_method = {'cuda': 'torch.cuda.max_memory_allocated',
                     'profiler': 'tensor bytes from torch.profiler allocation events',
                     'rss': 'RSS sampled by a thread (cross-check only)',
                     'none': 'not measured'}['cuda' if device.type == 'cuda' else args.memory]
    config = {'models': args.models, 'size': list(args.size), 'batch': args.batch, 'repeat': args.repeat,
              'warmup': args.warmup, 'clock': args.clock, 'reference': args.reference, 'with_cp': args.with_cp,
              'mode': args.mode,
              'memory_method': memory_method, 'drop_path_rate': 0.0}
    env = environment(args, device)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = []
    for name in args.models:
        results.append(benchmark_one(name, args, device, log))
        gc.collect()
    modes = MODES if args.mode == 'both' else (args.mode,)
    print(format_header(env, config))
    print(format_table(results, modes))
    notes = format_notes(results)
    if notes:
        print(notes)
    if args.json:
        write_json_atomic(args.json, {'env': env, 'config': config, 'results': results})
    return 0


if __name__ == '__main__':
    sys.exit(main())

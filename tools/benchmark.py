"""Benchmark vt_backbones against a reference implementation, as ratios measured in the same process.

    python tools/benchmark.py MODEL [MODEL ...] [--size H W | --size S] [--size ...] [--batch B]
        [--repeat N] [--warmup K] [--threads T] [--reference auto|mmdet|mmseg|timm|none|<one of our models>]
        [--dtype fp32|bf16|fp16 [...]] [--compile [on|both]] [--compile-options JSON] [--with-cp]
        [--mode fwd|fwdbwd|both]
        [--memory profiler|rss|none] [--clock wall|cpu] [--gemm-size N] [--device cpu|cuda] [--malloc keep|glibc]
        [--json OUT] [--plot OUT.png] [--markdown OUT.md|-]
    python tools/benchmark.py --from-json OUT.json [--markdown OUT.md|-] [--plot OUT.png]

For every MODEL and size the tool reports parameters, FLOPs, the median forward time (eval,
``torch.no_grad``), the median forward+backward time (train mode, ``sum(out.sum()).backward()``), the
peak memory of each, and the ratios ours / reference. Absolute times depend on the machine; the
ratios are the result: ours and the reference run interleaved in the same process (repeat ``i`` runs
ours then the reference when ``i`` is even, the reference then ours when odd), so machine noise and
drift hit both, and the time ratio is the median of the per-repeat ratios of adjacent runs.

Our model can run in several *settings* at once, each a subject of its own, all interleaved with the
reference: ``--dtype`` runs the forward under ``torch.autocast`` in bf16 or fp16 (the backward runs
outside it, as in training; the reference always runs in fp32), ``--compile`` builds ours with
``compile_blocks=dict()`` (compiled on every device, also on a CPU where ``True`` stays eager; ``--compile both``:
eager and compiled; ``--compile-options '{"dynamic": false}'`` passes that dict instead: static shapes, the
setting docs/performance.md measures on a CPU). ``--dtype fp32 bf16 --compile both``
gives the four settings of the README table: fp32, bf16, compiled, bf16+compiled. A compiled subject's
first call of each mode is untimed and reported as its compile time (wall clock). ``--reference auto``
takes the first installed reference that has the model's family (mmdet, mmseg, timm), else our own
model in fp32 eager. Several ``--size`` options measure every size; ``--plot`` draws time and peak
memory against the input size (log-log), ``--markdown`` writes the ratio table the README shows.
``--from-json`` reads a file written by ``--json`` back and prints, writes and draws all of that again without
measuring anything.
``--reference swin_t`` with ``swin_t`` gives an A/A run: how far from 1.00 noise alone moves a ratio.
On a machine shared with other jobs, ``--threads 1 --clock cpu`` (CPU time of the process) is far
less noisy than wall time with several threads, whose OpenMP barriers stall whenever one thread is
descheduled. On a CPU the process's allocator is set as our training and test tools set it (``--malloc keep``:
glibc keeps freed memory, `vt_backbones.engine.host_memory`; ``--malloc glibc`` measures glibc's default, under
which every step page-faults its tensors of 32 MB or more in again).

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

Roofline
    Beside every time, ``roofline``: the FLOP/s the step achieves as a fraction of the FLOP/s of one square GEMM
    (``--gemm-size``, 2048 by default) in the subject's dtype, timed with the same clock and thread count in the
    same process, one GEMM after every repeat of the interleaved subjects (so drift and other jobs hit it too).
    The step's FLOPs are the counted MACs x 2 (true FLOPs) x batch, x 3 for forward+backward (the backward's two
    matmuls per forward matmul), x 1 for the forward; the GEMM's are ``2 N^3``. A GEMM is about the fastest thing
    the machine does with these FLOPs, so 1.0 is the ceiling the matmuls of a step could reach, and what is
    missing is element-wise work, copies and small or skinny matmuls. Element-wise FLOPs are not counted, so a
    fraction slightly above 1 is possible for a step whose own matmuls outrun the reference GEMM.

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

References come from the table `REFERENCES` (reference name -> family class name -> builder), collected from
the families' ``reference_builders`` (each family registers its own in its file). ``--reference-plugin FILE.py``
adds references from a file of your own (an implementation that is not a package, e.g. an official repository's
backbone): it defines ``REFERENCE_BUILDERS = {reference name: {family class name: builder}}``, each builder called
as ``builder(variant, our_model, options)`` and returning a module whose forward gives the output maps.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shlex
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
from vt_backbones.engine.host_memory import keep_freed_memory
from vt_backbones.fileio import atomic_output, write_text_atomically

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
    compile_options: dict[str, Any] = field(default_factory=dict)  # our compile_blocks, when compiled


@dataclass
class ReferenceSource:
    package: str  # import name: the reference exists only if it imports
    builders: dict[str, Callable[[str, nn.Module, BuildOptions], nn.Module]]  # family class name -> builder
    note: str = ''


#: How to install a reference package, where it is not obvious.
REFERENCE_NOTES = {'timm': 'pip install timm (it pulls torchvision, so install it only where that is wanted)'}


def collect_references() -> dict[str, ReferenceSource]:
    """Reference name (its package's import name) -> the families' builders of the counterpart of our model,
    from each family's ``reference_builders`` (in the order the families list them)."""
    references: dict[str, ReferenceSource] = {}
    for family in vt_backbones.families():
        for name, builder in family.reference_builders.items():
            references.setdefault(name, ReferenceSource(name, {}, REFERENCE_NOTES.get(name, '')))
            references[name].builders[family.__name__] = builder
    return references


#: reference name -> where it comes from and, per family, how to build the counterpart of our model.
REFERENCES: dict[str, ReferenceSource] = collect_references()


def load_reference_plugin(path: str) -> None:
    """Adds the references of the file ``path`` (its ``REFERENCE_BUILDERS``) to `REFERENCES`; the file is
    imported as a module named after it, so a reference from it counts as installed."""
    import importlib.util
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or not os.path.isfile(path):
        raise SystemExit(f'error: argument --reference-plugin: {path!r} is not a Python file')
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    builders = getattr(module, 'REFERENCE_BUILDERS', None)
    if not isinstance(builders, dict) or not all(isinstance(b, dict) for b in builders.values()):
        raise SystemExit(f'error: argument --reference-plugin: {path} must define REFERENCE_BUILDERS = '
                         f'{{reference name: {{family class name: builder}}}}')
    families = {family.__name__ for family in vt_backbones.families()}
    for reference, by_family in builders.items():
        unknown = sorted(set(by_family) - families)
        if unknown:
            raise SystemExit(f'error: argument --reference-plugin: {path}: {reference} names unknown families '
                             f'{unknown}; expected some of {sorted(families)}')
        REFERENCES[reference] = ReferenceSource(name, dict(by_family), f'from {path}')


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
#: --dtype name -> the autocast dtype of our forward (None: plain fp32).
DTYPES: dict[str, torch.dtype | None] = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


@dataclass(frozen=True)
class Setting:
    """How our model runs: the autocast dtype of the forward and whether its blocks are compiled."""
    dtype: str = 'fp32'
    compiled: bool = False

    @property
    def label(self) -> str:
        if not self.compiled:
            return self.dtype
        return 'compiled' if self.dtype == 'fp32' else f'{self.dtype}+compiled'


@dataclass
class Subject:
    """One model under test: ours in one setting, or the reference (always fp32 eager)."""
    name: str
    source: str
    module: nn.Module
    setting: Setting = Setting()
    params: int = 0
    flops: FlopCount | None = None
    times_ms: dict[str, list[float]] = field(default_factory=dict)
    peak_bytes: dict[str, int | None] = field(default_factory=dict)
    compile_s: dict[str, float] = field(default_factory=dict)  # mode -> wall time of the first (compiling) call
    gemm_ms: dict[str, list[float]] = field(default_factory=dict)  # mode -> the GEMM times interleaved with it


def make_step(module: nn.Module, mode: str, x: Tensor, dtype: torch.dtype | None = None) -> Callable[[], None]:
    """The measured unit: forward under no_grad, or forward plus backward of the sum of all outputs
    (gradients set to None first, so their allocation is part of every step, as in training). With
    ``dtype`` the forward runs under ``torch.autocast`` and the backward outside it, as AMP training does."""
    def forward() -> tuple[Tensor, ...]:
        if dtype is None:
            return module(x)
        with torch.autocast(x.device.type, dtype=dtype):
            return module(x)

    if mode == 'fwd':
        def step() -> None:
            with torch.no_grad():
                forward()
    else:
        def step() -> None:
            module.zero_grad(set_to_none=True)
            outs = forward()
            torch.stack([out.float().sum() for out in outs]).sum().backward()
    return step


def subject_step(subject: Subject, mode: str, x: Tensor) -> Callable[[], None]:
    return make_step(subject.module, mode, x, DTYPES[subject.setting.dtype])


#: FLOPs of one forward+backward step per forward FLOP: the backward computes two matmuls (the input's and the
#: weight's gradient) per forward matmul.
FLOPS_PER_MODE = {'fwd': 1, 'fwdbwd': 3}


def gemm_step(n: int, dtype: str, device: torch.device) -> Callable[[], None]:
    """One ``n x n @ n x n`` matmul in ``dtype`` (``2 n^3`` FLOPs): the roofline's reference rate."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=generator).to(device, DTYPES[dtype] or torch.float32) for _ in range(2))
    return lambda: torch.mm(a, b)


def set_mode(module: nn.Module, mode: str) -> None:
    module.train(mode == 'fwdbwd')


CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def compile_first(subjects: list[Subject], mode: str, x: Tensor, device: torch.device) -> None:
    """Runs the first call of every compiled subject untimed and records its wall time (the compile time;
    the wall clock, since the compiler's worker processes are not this process's CPU time)."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    for subject in subjects:
        if subject.setting.compiled and mode not in subject.compile_s:
            set_mode(subject.module, mode)
            sync()
            start = time.perf_counter()
            subject_step(subject, mode, x)()
            sync()
            subject.compile_s[mode] = time.perf_counter() - start


def time_interleaved(subjects: list[Subject], mode: str, x: Tensor, repeat: int, warmup: int,
                     device: torch.device, clock: str = 'wall', progress: Callable[[], None] = lambda: None,
                     gemm_size: int = 0) -> None:
    """Runs every subject ``warmup + repeat`` times, alternating the order (AB, BA, AB, ...); ``progress``
    is called after every step. With ``gemm_size``, a GEMM of that size in every subject's dtype (`gemm_step`)
    runs after every round, timed the same way, into the subjects' ``gemm_ms``."""
    now = CLOCKS[clock]
    for subject in subjects:
        set_mode(subject.module, mode)
    steps = [subject_step(s, mode, x) for s in subjects]
    dtypes = list(dict.fromkeys(s.setting.dtype for s in subjects)) if gemm_size else []
    gemms = [gemm_step(gemm_size, dtype, device) for dtype in dtypes]
    gemm_times: list[list[float]] = [[] for _ in dtypes]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    times: list[list[float]] = [[] for _ in subjects]

    def timed(step: Callable[[], None]) -> float:
        sync()
        start = now()
        step()
        sync()
        return (now() - start) * 1e3

    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no collection pauses inside a timed step
    try:
        for i in range(warmup + repeat):
            order = range(len(subjects)) if i % 2 == 0 else reversed(range(len(subjects)))
            for j in order:
                elapsed = timed(steps[j])
                if i >= warmup:
                    times[j].append(elapsed)
                progress()
            for gemm, gemm_dtype_times in zip(gemms, gemm_times):
                elapsed = timed(gemm)
                if i >= warmup:
                    gemm_dtype_times.append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    for subject, subject_times in zip(subjects, times):
        subject.times_ms[mode] = subject_times
        if dtypes:
            subject.gemm_ms[mode] = gemm_times[dtypes.index(subject.setting.dtype)]


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


def kernel_huge_pages() -> str:
    """The kernel's transparent-huge-page mode (always, madvise or never), or ``unknown``."""
    try:
        with open('/sys/kernel/mm/transparent_hugepage/enabled') as f:
            return f.read().split('[', 1)[1].split(']', 1)[0]
    except (OSError, IndexError):
        return 'unknown'


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
        # PyTorch's CPU allocator asks for huge pages (buffers >= 2 MB) only with this variable set before torch
        # starts: it changes the speed of matmuls with large outputs, both ways (docs/performance.md).
        'thp_alloc': os.environ.get('THP_MEM_ALLOC_ENABLE', '0'),
        'kernel_thp': kernel_huge_pages(),
    }
    for name in ([args.reference] if args.reference in REFERENCES else REFERENCES if args.reference == 'auto' else []):
        version = package_version(REFERENCES[name].package)
        if version is not None:
            env[REFERENCES[name].package] = version
    return env


class _NoProgress:
    """Stands in for a tqdm bar when there is none: the phases are then logged as lines."""
    disable = True

    def set_description(self, text: str) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, disable: bool = False) -> Any:
    """A tqdm bar over the timed steps on stderr, shown on a terminal only (tqdm decides); the phase of the run
    is its description."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return _NoProgress() if disable else tqdm(total=total, unit='step', file=sys.stderr, disable=None,
                                              dynamic_ncols=True)


def build_ours(name: str, opts: BuildOptions, compiled: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return vt_backbones.create_backbone(name, drop_path_rate=opts.drop_path_rate, with_cp=opts.with_cp,
                                        compile_blocks=dict(opts.compile_options) if compiled else False)


def resolve_reference(reference: str, name: str) -> str:
    """``auto`` -> the first installed reference with the model's family, else the model itself (ours, fp32 eager)."""
    if reference != 'auto':
        return reference
    family = vt_backbones.family_of(name).__name__
    return next((ref for ref, source in REFERENCES.items()
                 if family in source.builders and package_version(source.package) is not None), name)


def build_reference(reference: str, name: str, ours: nn.Module, opts: BuildOptions) -> Subject | None:
    torch.manual_seed(0)
    if reference == 'none':
        return None
    if reference in REFERENCES:
        family = vt_backbones.family_of(name).__name__
        module = REFERENCES[reference].builders[family](name, ours, opts)
        return Subject(f'{reference}:{name}', f'{reference} {type(module).__name__}', module)
    return Subject(f'ours:{reference}', 'vt_backbones', build_ours(reference, opts))


def summarize(subject: Subject, modes: Sequence[str], batch: int, gemm_size: int = 0) -> dict[str, Any]:
    """The json entry of a subject; per mode with ``gemm_size``: achieved GFLOP/s, the GEMM's and their ratio
    ``roofline`` (see the module docstring)."""
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
        gemm_times = subject.gemm_ms.get(mode)
        if gemm_times:
            achieved = 2 * flops.macs * batch * FLOPS_PER_MODE[mode] / statistics.median(times) / 1e6
            gemm = 2 * gemm_size ** 3 / statistics.median(gemm_times) / 1e6
            out[mode].update({'gflop_per_s': achieved, 'gemm_size': gemm_size, 'gemm_dtype': subject.setting.dtype,
                              'gemm_times_ms': gemm_times, 'gemm_gflop_per_s': gemm, 'roofline': achieved / gemm})
    return out


def ratios(ours: dict[str, Any], ref: dict[str, Any], subjects: list[Subject],
           modes: Sequence[str]) -> dict[str, Any]:
    """Ours / reference for the pair ``subjects`` (ours, reference) and their summaries."""
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


def settings_of(args: argparse.Namespace) -> list[Setting]:
    """Our settings in table order: every dtype eager, then every dtype compiled."""
    compiled = {'off': [False], 'on': [True], 'both': [False, True]}[args.compile]
    return [Setting(dtype, c) for c in compiled for dtype in args.dtype]


def steps_per_job(args: argparse.Namespace) -> int:
    """Timed steps of one (model, size): what the progress bar counts."""
    modes = MODES if args.mode == 'both' else (args.mode,)
    return len(modes) * (args.warmup + args.repeat) * (len(settings_of(args)) + (args.reference != 'none'))


def benchmark_one(name: str, size: tuple[int, int], args: argparse.Namespace, device: torch.device,
                  log: Callable[[str], None], progress: Callable[[], None] = lambda: None) -> list[dict]:
    """Measures ``name`` at ``size`` in every setting against the reference: one result per setting."""
    H, W = size
    opts = BuildOptions(size=(H, W), drop_path_rate=0.0, with_cp=args.with_cp, compile_options=args.compile_options)
    ours = [Subject(name if setting == Setting() else f'{name}:{setting.label}', 'vt_backbones',
                    build_ours(name, opts, setting.compiled), setting) for setting in settings_of(args)]
    reference = resolve_reference(args.reference, name)
    try:
        ref = build_reference(reference, name, ours[0].module, opts)
    except Exception as exc:
        raise SystemExit(f'error: could not build the {reference} reference for {name}: '
                         f'{type(exc).__name__}: {exc}') from exc
    subjects = ours + ([ref] if ref is not None else [])
    modes = MODES if args.mode == 'both' else (args.mode,)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, H, W, device=device)
    # FLOPs do not depend on the setting: count them once on an eager model (the tracer cannot see through
    # compiled code).
    eager = next((s.module for s in ours if not s.setting.compiled), None) or build_ours(name, opts)
    counted: dict[int, tuple[int, FlopCount]] = {}
    for subject in subjects:
        subject.module.to(device)
        counted_module = subject.module if subject is ref else eager.to(device)
        if id(counted_module) not in counted:
            log(f'[{name} {H}x{W}] counting FLOPs of {subject.name}')
            counted[id(counted_module)] = (count_params(counted_module),
                                           count_flops(counted_module, (torch.randn(1, 3, H, W, device=device),)))
        subject.params, subject.flops = counted[id(counted_module)]
    for mode in modes:
        if any(s.setting.compiled for s in ours):
            log(f'[{name} {H}x{W}] compiling {MODE_LABELS[mode]} (first call, untimed)')
            compile_first(subjects, mode, x, device)
        log(f'[{name} {H}x{W}] timing {MODE_LABELS[mode]}: {args.warmup} warmup + {args.repeat} repeats, '
            f'{len(subjects)} subjects interleaved')
        time_interleaved(subjects, mode, x, args.repeat, args.warmup, device, args.clock, progress, args.gemm_size)
        for subject in subjects:
            set_mode(subject.module, mode)
            subject.peak_bytes[mode] = measure_peak(subject_step(subject, mode, x), args.memory, device)
    ref_summary = None if ref is None else summarize(ref, modes, args.batch, args.gemm_size)
    results = []
    for subject in ours:
        summary = summarize(subject, modes, args.batch, args.gemm_size)
        results.append({
            'model': name, 'size': [H, W], 'setting': subject.setting.label, 'dtype': subject.setting.dtype,
            'compiled': subject.setting.compiled, 'compile_s': subject.compile_s,
            'reference': None if ref is None else reference,
            'ours': summary, 'ref': ref_summary,
            'ratios': None if ref is None else ratios(summary, ref_summary, [subject, ref], modes)})
    return results


# ---- output -------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _same_job(a: dict, b: dict) -> bool:
    return a['model'] == b['model'] and a.get('size') == b.get('size')


def format_table(results: list[dict], modes: Sequence[str]) -> str:
    """One row per result (ours in one setting), the reference's row after the last setting of its model and size."""
    with_size = any('size' in r for r in results)
    header = ['model'] + (['size'] if with_size else []) + ['params(M)', 'GFLOPs']
    for mode in modes:
        header += [f'{MODE_LABELS[mode]} ms', f'{MODE_LABELS[mode]} MB', f'{MODE_LABELS[mode]} roofline']
    with_ref = any(r['ref'] is not None for r in results)
    if with_ref:
        for mode in modes:
            header += [f'{MODE_LABELS[mode]} time x', f'{MODE_LABELS[mode]} mem x']
    rows = []
    for index, result in enumerate(results):
        last_of_job = index + 1 == len(results) or not _same_job(result, results[index + 1])
        for key in ('ours', 'ref'):
            entry = result[key]
            if entry is None or (key == 'ref' and not last_of_job):
                continue
            row = [entry['name'] if key == 'ours' else '  ' + entry['name']]
            if with_size:
                row.append('x'.join(map(str, result['size'])) if 'size' in result else '')
            row += [_fmt(entry['params_m'], 2), _fmt(entry['gflops'], 3)]
            for mode in modes:
                row += [_fmt(entry[mode]['median_ms'], 1), _fmt(entry[mode]['peak_mem_mb'], 1),
                        _fmt(_roofline(entry, mode), 2)]
            if with_ref:
                r = result['ratios'] if key == 'ours' else None
                for mode in modes:
                    row += ['', ''] if r is None else [_fmt(r[f'{mode}_time'], 2), _fmt(r[f'{mode}_mem'], 2)]
            rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ['  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    return '\n'.join(lines)


def format_compile_times(results: list[dict]) -> str:
    lines = [f"# {r['model']} {'x'.join(map(str, r['size']))} {r['setting']}: compile (first call) "
             + ', '.join(f'{MODE_LABELS[mode]} {seconds:.1f} s' for mode, seconds in r['compile_s'].items())
             for r in results if r.get('compile_s')]
    return '\n'.join(lines)


def _ratio_cell(value: float | None) -> str:
    return '-' if value is None else f'{value:.2f}×'


def _roofline(entry: dict | None, mode: str) -> float | None:
    """The entry's roofline fraction in ``mode``; None where it was not measured (--gemm-size 0, older json)."""
    return (entry or {}).get(mode, {}).get('roofline')


def reference_label(result: dict) -> str:
    if result['reference'] is None:
        return 'none'
    if result['reference'] == result['model']:
        return 'ours fp32 (no installed reference)'
    return result['ref']['source']


def format_markdown(results: list[dict], modes: Sequence[str], config: dict[str, Any], command: str) -> str:
    """The README's performance table: one row per model and size, time and memory ratios (ours / reference)
    and roofline of every setting, for forward+backward when it was measured, and the first call's wall time of
    compiled settings."""
    mode = 'fwdbwd' if 'fwdbwd' in modes else modes[0]
    labels = list(dict.fromkeys(r['setting'] for r in results))
    compiled = {r['setting'] for r in results if r.get('compiled')}
    jobs: dict[tuple, dict[str, dict]] = {}
    for result in results:
        jobs.setdefault((result['model'], tuple(result['size'])), {})[result['setting']] = result
    header = ['model', 'size', 'reference'] + [
        f'{label} {what}' for label in labels
        for what in ('time', 'memory', 'roofline', *(('compile s',) if label in compiled else ()))] + ['reference roofline']
    lines = [f'Generated by `{command}`: ours / reference, {MODE_LABELS[mode]}, batch {config["batch"]}, '
             f'{config["threads"]} thread(s), {config["clock"]} clock, median of {config["repeat"]} paired '
             f'repeats; memory: peak {config["memory_method"]}; roofline: achieved FLOP/s (2 x counted MACs, '
             f'x3 for fwd+bwd) / FLOP/s of a {config.get("gemm_size", "-")}² GEMM in the same dtype, same process.',
             '',
             '| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for (model, (H, W)), by_setting in jobs.items():
        first = next(iter(by_setting.values()))
        cells = [model, f'{H}×{W}', reference_label(first)]
        for label in labels:
            result = by_setting.get(label) or {}
            r = result.get('ratios')
            cells += ['-', '-'] if r is None else [_ratio_cell(r[f'{mode}_time']), _ratio_cell(r[f'{mode}_mem'])]
            cells.append(_fmt(_roofline(result.get('ours'), mode), 2))
            if label in compiled:
                cells.append(_fmt(result.get('compile_s', {}).get(mode), 0))
        cells.append(_fmt(_roofline(first['ref'], mode), 2))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def plot_scaling(results: list[dict], modes: Sequence[str], path: str) -> None:
    """One log-log picture: median time and peak memory against input pixels, a line per model and setting
    (and per reference), written atomically as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    mode = 'fwdbwd' if 'fwdbwd' in modes else modes[0]
    lines: dict[str, list[tuple[int, float, float | None]]] = {}
    for result in results:
        pixels = result['size'][0] * result['size'][1]
        for key, label in (('ours', f"{result['model']} {result['setting']}"), ('ref', None)):
            entry = result[key]
            if entry is None:
                continue
            label = label or f"{result['model']} ref: {reference_label(result)}"
            point = (pixels, entry[mode]['median_ms'], entry[mode]['peak_mem_mb'])
            if point not in lines.setdefault(label, []):
                lines[label].append(point)
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 5))
    for label, points in lines.items():
        points.sort()
        pixels = [p[0] for p in points]
        style = '--' if ' ref: ' in label else '-'
        ax_time.plot(pixels, [p[1] for p in points], style, marker='o', label=label)
        if all(p[2] is not None for p in points):
            ax_mem.plot(pixels, [p[2] for p in points], style, marker='o', label=label)
    for ax, ylabel in ((ax_time, f'{MODE_LABELS[mode]} time per step (ms)'), (ax_mem, 'peak memory (MB)')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('input pixels (H x W)')
        ax.set_ylabel(ylabel)
        ax.grid(True, which='both', alpha=0.3)
    ax_time.legend(fontsize='small')
    fig.tight_layout()
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format='png', dpi=100)
    finally:
        plt.close(fig)


def format_header(env: dict[str, Any], config: dict[str, Any]) -> str:
    sizes = ', '.join(f'{H}x{W}' for H, W in config['sizes'])
    refs = [f'{k} {v}' for k, v in env.items() if k in {s.package for s in REFERENCES.values()}]
    lines = [
        f"# torch {env['torch']} | threads {env['threads']} | {env['device']}: "
        f"{env['gpu'] or env['cpu']} ({env['cpu_count']} logical CPUs)" + ''.join(f' | {r}' for r in refs)
        + (f" | THP_MEM_ALLOC_ENABLE={env.get('thp_alloc', '?')} (kernel THP {env.get('kernel_thp', '?')})"
           f" | malloc: {env.get('malloc', '?')}" if env['device'] == 'cpu' else ''),
        f"# input {config['batch']}x3x({sizes}) | ours: {', '.join(config['settings'])}"
        + (f" (compile_blocks={config.get('compile_options', {})!r})"
           if any('compiled' in s for s in config['settings']) else '') + f" | warmup {config['warmup']} + repeat {config['repeat']} "
        f"({config['clock']} clock), "
        f"ours and reference interleaved (AB, BA, ...) | mode {config['mode']} | with_cp {config['with_cp']} "
        f"| drop_path_rate 0",
        '# ms: median per step (fwd: eval + no_grad; fwd+bwd: train, sum of outputs backward). '
        'MB: peak memory above the start of the step, ' + config['memory_method'] + '.',
        '# GFLOPs: per image, multiply-accumulates (fvcore/mmengine convention, as the Swin paper), SDPA '
        'counted by our handle.',
    ]
    if config.get('gemm_size'):
        n = config['gemm_size']
        lines.append(f'# roofline: achieved FLOP/s (2 x MACs x batch, x3 for fwd+bwd) / FLOP/s of a {n}x{n} GEMM in '
                     f'the same dtype, timed after every round in this process.')
    if config['reference'] != 'none':
        lines.append('# x: ours / reference (time: median of per-repeat ratios; mem: ratio of peaks).')
    return '\n'.join(lines)


def format_notes(results: list[dict]) -> str:
    notes, seen = [], set()
    for result in results:
        for key in ('ours', 'ref'):
            entry = result[key]
            if entry and entry['flops_skipped_ops'] and (entry['name'], key, str(result.get('size'))) not in seen:
                seen.add((entry['name'], key, str(result.get('size'))))
                ops = ', '.join(f'{op.removeprefix("aten::")} x{n}' for op, n in entry['flops_skipped_ops'].items())
                notes.append(f"# {entry['name']}: not counted (no handle, element-wise or data movement): {ops}")
    return '\n'.join(notes)


#: What ``--json`` writes, and ``--from-json`` reads back.
SAVED_KEYS = ['env', 'config', 'command', 'results']


def write_json_atomic(path: str, data: Any) -> None:
    write_text_atomically(path, json.dumps(data, indent=2) + '\n')


# ---- arguments ----------------------------------------------------------------------------------
def _json_object(text: str) -> dict[str, Any]:
    expected = f'expected a JSON object, e.g. \'{{"dynamic": false}}\', got {text!r}'
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f'{expected} ({exc.msg})') from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(expected)
    return value


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
    parser.add_argument('--size', nargs='+', type=_positive_int, action='append', metavar='S',
                        help=f'input size: H W, or S for S x S (at least {MIN_SIZE}); repeat the option to '
                             f'measure several sizes (default: 224)')
    parser.add_argument('--batch', type=_positive_int, default=1, help='batch size of the timed steps')
    parser.add_argument('--repeat', type=_positive_int, default=10, help='timed steps per model and mode')
    parser.add_argument('--warmup', type=_non_negative_int, default=2, help='untimed steps first')
    parser.add_argument('--threads', type=_positive_int, default=None,
                        help='torch intra-op threads (default: torch\'s choice)')
    parser.add_argument('--reference', default='auto', metavar='REF',
                        choices=['auto', *REFERENCES, 'none', *models],
                        help=f'what the ratios are against: auto (the first of {", ".join(REFERENCES)} that has the '
                             f'family, else our own model in fp32 eager), one of them, none, or one of our models')
    parser.add_argument('--reference-plugin', action='append', default=[], metavar='FILE.py',
                        help='add the references a file of yours defines (REFERENCE_BUILDERS = {name: {family class '
                             'name: builder(variant, our_model, options)}}), e.g. an official repository\'s backbone')
    parser.add_argument('--dtype', nargs='+', choices=list(DTYPES), default=['fp32'],
                        help='our forward under torch.autocast in these dtypes (one subject each; fp32: no autocast); '
                             'the reference stays fp32')
    parser.add_argument('--compile', nargs='?', const='on', default='off', choices=['off', 'on', 'both'],
                        help='build ours with compile_blocks=dict(), compiled on every device (--compile or --compile '
                             'on), or measure both eager and compiled (--compile both)')
    parser.add_argument('--compile-options', type=_json_object, default={}, metavar='JSON',
                        help='the dict of torch.compile options that --compile passes as compile_blocks, e.g. '
                             '\'{"dynamic": false}\' for static shapes (default: {}, inductor with dynamic shapes)')
    parser.add_argument('--with-cp', action='store_true', help='activation checkpointing (ours and the reference)')
    parser.add_argument('--mode', choices=['fwd', 'fwdbwd', 'both'], default='both')
    parser.add_argument('--memory', choices=['profiler', 'rss', 'none'], default='profiler',
                        help='how peak memory is measured on CPU (CUDA always uses max_memory_allocated)')
    parser.add_argument('--clock', choices=list(CLOCKS), default='wall',
                        help='wall: elapsed time; cpu: CPU time of this process (all threads), which other '
                             'processes on a shared machine do not inflate; use it with --threads 1, since with '
                             'more threads it also counts the threads\' spin-waiting')
    parser.add_argument('--gemm-size', type=_non_negative_int, default=2048, metavar='N',
                        help='the roofline\'s GEMM: N x N @ N x N in every measured dtype, timed after every round '
                             '(0: no roofline)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--malloc', choices=['keep', 'glibc'], default='keep',
                        help='on CPU, keep: glibc keeps freed memory for the next step, as tools/train.py and '
                             'tools/test.py set it on CPU (vt_backbones.engine.host_memory); glibc: its default, '
                             'which unmaps blocks of 32 MB or more when freed')
    parser.add_argument('--json', metavar='OUT', help='also write the results to this json file (atomically)')
    parser.add_argument('--plot', metavar='OUT.png',
                        help='draw time and peak memory against the input size, log-log, into this PNG (atomically)')
    parser.add_argument('--markdown', metavar='OUT.md',
                        help='write the ratio table as markdown (the README performance table; - for stdout)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar on stderr')
    parser.add_argument('--from-json', metavar='IN.json',
                        help='measure nothing: print the tables of a file written by --json and write its --markdown '
                             'and --plot (alone with those two options, without MODEL)')
    return parser


def parse_rendering_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """``--from-json IN.json [--markdown OUT.md|-] [--plot OUT.png]``: what a saved run can still give."""
    parser = argparse.ArgumentParser(description='Print and draw the results of a run saved with --json.')
    parser.add_argument('--from-json', metavar='IN.json', required=True)
    parser.add_argument('--markdown', metavar='OUT.md')
    parser.add_argument('--plot', metavar='OUT.png')
    args = parser.parse_args(argv)
    if args.plot and not args.plot.lower().endswith('.png'):
        parser.error(f'argument --plot: expected a .png file name, got {args.plot!r}')
    try:
        with open(args.from_json) as f:
            args.saved = json.load(f)
    except (OSError, ValueError) as err:
        parser.error(f'argument --from-json: cannot read {args.from_json}: {err}')
    missing = [key for key in SAVED_KEYS if key not in args.saved] if isinstance(args.saved, dict) else SAVED_KEYS
    if missing:
        parser.error(f'argument --from-json: {args.from_json} is not a file of tools/benchmark.py --json '
                     f'(missing {", ".join(missing)})')
    return args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    # Plugins first: the references they add are choices of --reference.
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # --reference is not --reference-plugin
    pre.add_argument('--reference-plugin', action='append', default=[])
    pre.add_argument('--from-json')
    known = pre.parse_known_args(argv)[0]
    if known.from_json is not None:
        return parse_rendering_args(argv)
    for path in known.reference_plugin:
        load_reference_plugin(path)
    parser = build_parser()
    args = parser.parse_args(argv)
    sizes = []
    for size in args.size or [[224]]:
        if len(size) > 2:
            parser.error(f'argument --size: expected H W or a single S, got {len(size)} values')
        size = tuple(size) * 2 if len(size) == 1 else tuple(size)
        if min(size) < MIN_SIZE:
            parser.error(f'argument --size: H and W must be at least {MIN_SIZE}, got {size[0]} {size[1]}')
        sizes.append(size)
    args.sizes = list(dict.fromkeys(sizes))
    if args.plot and not args.plot.lower().endswith('.png'):
        parser.error(f'argument --plot: expected a .png file name, got {args.plot!r}')
    if args.device == 'cuda' and 'bf16' in args.dtype and not torch.cuda.is_bf16_supported():
        parser.error('argument --dtype: bf16 requested but this GPU does not support bfloat16')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('argument --device: cuda requested but torch.cuda.is_available() is False')
    if args.device == 'cuda' and args.clock == 'cpu':
        parser.error('argument --clock: cpu time does not measure GPU work; use wall with --device cuda')
    if args.compile_options and args.compile == 'off':
        parser.error('argument --compile-options: it sets how --compile compiles; add --compile on or --compile both')
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
                         f'{family}.reference_builders is empty')
                parser.error(f'argument --reference: no {args.reference} reference for {name} ({family}); '
                             f'{known}; or use --reference none or one of our models')
    return args


def print_and_draw(saved: dict[str, Any], markdown: str | None, plot: str | None) -> None:
    """Prints a run's header, table and notes, its markdown table with ``markdown='-'``, and draws its plot."""
    results, config = saved['results'], saved['config']
    modes = MODES if config['mode'] == 'both' else (config['mode'],)
    print(format_header(saved['env'], config))
    print(format_table(results, modes))
    for notes in (format_notes(results), format_compile_times(results)):
        if notes:
            print(notes)
    if markdown == '-':
        print(format_markdown(results, modes, config, saved['command']), end='')
    elif markdown:
        write_text_atomically(markdown, format_markdown(results, modes, config, saved['command']))
    if plot:
        plot_scaling(results, modes, plot)
        print(f'# plot: {plot}')


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json is not None:
        print_and_draw(args.saved, args.markdown, args.plot)
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    malloc = 'glibc default'
    if device.type == 'cpu' and args.malloc == 'keep':
        malloc = 'keeps freed memory' if keep_freed_memory() else 'glibc default or the MALLOC_* environment'
    memory_method = {'cuda': 'torch.cuda.max_memory_allocated',
                     'profiler': 'tensor bytes from torch.profiler allocation events',
                     'rss': 'RSS sampled by a thread (cross-check only)',
                     'none': 'not measured'}['cuda' if device.type == 'cuda' else args.memory]
    config = {'models': args.models, 'sizes': [list(size) for size in args.sizes], 'batch': args.batch,
              'repeat': args.repeat, 'warmup': args.warmup, 'clock': args.clock, 'reference': args.reference,
              'settings': [s.label for s in settings_of(args)], 'with_cp': args.with_cp, 'mode': args.mode,
              'threads': torch.get_num_threads(), 'memory_method': memory_method, 'drop_path_rate': 0.0,
              'gemm_size': args.gemm_size, 'compile_options': args.compile_options}
    env = environment(args, device)
    env['malloc'] = malloc
    jobs = [(name, size) for name in args.models for size in args.sizes]
    bar = progress_bar(len(jobs) * steps_per_job(args), disable=args.no_progress)

    def log(message: str) -> None:
        bar.set_description(message)
        if bar.disable:
            print(message, file=sys.stderr, flush=True)

    command = 'python tools/benchmark.py ' + shlex.join(sys.argv[1:] if argv is None else argv)
    saved = {'env': env, 'config': config, 'command': command, 'results': []}

    def write_files() -> None:
        if args.json:
            write_json_atomic(args.json, saved)
        if args.markdown and args.markdown != '-':
            modes = MODES if args.mode == 'both' else (args.mode,)
            write_text_atomically(args.markdown, format_markdown(saved['results'], modes, config, command))

    try:
        for name, size in jobs:
            saved['results'] += benchmark_one(name, size, args, device, log, lambda: bar.update(1))
            write_files()  # after every model and size: a long run that is stopped keeps what it measured
            gc.collect()
    finally:
        bar.close()
    print_and_draw(saved, '-' if args.markdown == '-' else None, args.plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())

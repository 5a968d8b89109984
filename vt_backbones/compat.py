"""Fixes that make mmengine 0.10.7 work on today's PyTorch, applied by `apply_patches` (which ``import
vt_backbones`` calls unless ``VT_BACKBONES_NO_PATCHES=1``) and reverted by `remove_patches`.

1. Weights-only checkpoint loading (every machine).
   torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine calls ``torch.load``
   without the argument, so its own checkpoints (Runner resume, ``load_from``,
   ``init_cfg=dict(type='Pretrained')``, ``load_checkpoint``, ``CheckpointLoader``) are refused
   for the few non-tensor objects it writes. Instead of ``weights_only=False`` we add exactly
   those objects to ``torch.serialization.add_safe_globals`` (found with
   ``torch.serialization.get_unsafe_globals_in_checkpoint`` on Runner checkpoints):

   - ``mmengine.logging.history_buffer.HistoryBuffer``: the values of
     ``message_hub['log_scalars']``. Its ``__setstate__`` only stores the state dict on the
     instance and merges ``statistics_methods`` into its method table.
   - ``builtins.getattr``, bound to ``_history_buffer_method`` and not to the real ``getattr``:
     ``HistoryBuffer.__getstate__`` pickles its statistics methods as
     ``getattr(HistoryBuffer, 'min')`` (and ``max``, ``current``, ``mean``). The stand-in resolves
     exactly those four names on that class and raises for anything else, so a checkpoint still
     cannot use ``getattr`` to reach arbitrary attributes.
   - numpy, for the ``float64``/``int64`` arrays inside ``HistoryBuffer`` and the numpy scalars in
     ``message_hub['runtime_info']``: ``eta`` (``float64``) and, with ``save_best``, ``best_score``
     (``float32`` from mmseg's ``IoUMetric``): ``numpy._core.multiarray._reconstruct`` and
     ``numpy.ndarray`` (arrays), ``numpy._core.multiarray.scalar`` (scalars), ``numpy.dtype`` (called
     to make a dtype) and ``numpy.dtypes.Float32DType``/``Float64DType``/``Int64DType``: the unpickler
     sets state only on allowlisted types, so these three are the only dtypes a checkpoint can build
     (object, void and other dtypes stay refused). The two ``multiarray`` functions are also allowed
     under their numpy 1 names, ``numpy.core.multiarray.*``, for checkpoints written with numpy 1.

   Everything else mmengine writes (tensors, ``OrderedDict``, ``Counter`` from ``MultiStepLR``,
   plain containers and scalars) is allowed by torch already.

2. Distributed runs on a machine without CUDA (patched only when mmengine finds no accelerator):

   - ``mmengine.dist.utils._init_dist_pytorch`` (pytorch launcher) calls
     ``torch.cuda.set_device``; it is wrapped to skip that and to use gloo where nccl was asked for.
   - ``MMDistributedDataParallel`` is built by ``Runner.wrap_model`` with
     ``device_ids=[LOCAL_RANK]``, which DDP rejects for CPU modules; the wrapper drops
     ``device_ids`` and reverts SyncBN layers (from ``cfg.sync_bn`` or built directly) to BN.
   - ``SyncBN`` in the registry is replaced by mmengine's ``_BatchNormXd`` (what mmengine's own
     ``revert_sync_batchnorm`` produces), since ``nn.SyncBatchNorm`` refuses CPU input when the
     world size is above 1: GPU configs with ``norm_cfg=dict(type='SyncBN')`` run unchanged.

3. Checkpoints that survive a crash, and a resume that repeats the uninterrupted run (every machine).

   - ``LocalBackend.put`` (how mmengine's ``save_checkpoint`` writes a local file) writes to a hidden
     temporary file beside the target, flushes it to disk and renames it over the target, so a process
     killed while saving leaves the previous file and ``last_checkpoint`` intact (CheckpointHook writes
     ``last_checkpoint`` only after the checkpoint is complete).
   - ``find_latest_checkpoint`` (what ``resume=True`` without a file uses) checks the file that
     ``last_checkpoint`` names (a torch zip archive whose members pass their CRC check) and, when it is
     missing or damaged, says so and falls back to the newest intact ``*_<step>.pth`` beside it. (With
     ``max_keep_ckpts=1`` there is none to fall back to: CheckpointHook deletes the old file before it
     writes the new one.)
   - ``IterationSeedHook`` (added by ``tools/train.py``) reseeds python, numpy and torch before each
     training batch is fetched, from the run's seed and the iteration, so an iteration-based run
     resumed from iteration N draws exactly the random numbers (augmentation, samplers, drop path) the
     uninterrupted run drew. mmengine alone does not save random states: a resumed run diverges.

4. ``AmpOptimWrapper`` on a machine without CUDA (registered in its place only then): mmengine 0.10.7
   asserts an accelerator. Ours autocasts in bfloat16 on the CPU, without loss scaling (bf16 has
   fp32's exponent range, so gradients do not underflow the way fp16's do):

   - ``dtype='bfloat16'`` (what ``tools/train.py --amp`` asks on a CPU): bf16 autocast, always;
   - no dtype or ``'float16'`` (the GPU recipes' fp16): bf16 when the CPU computes bf16 natively
     (AVX512-BF16 / AMX, as oneDNN reports), else fp32, because emulated bf16 is many times slower than
     fp32 (25-55x for linear and conv layers on an AVX2-only CPU).

   mmcv's CPU kernels of ``roi_align`` and ``nms`` take no bf16 (float/double/half only), so under CPU
   autocast they run outside it on fp32 inputs (their gradients flow back to the bf16 features).
   The precision used is logged. The loss scaler is disabled, and its (empty) state is not written
   into checkpoints, so a CUDA run resuming a CPU checkpoint starts a fresh scaler; a CPU run resuming
   a CUDA checkpoint ignores the saved scale. With CUDA, mmengine's class is untouched: fp16 autocast
   and a dynamic ``GradScaler``, saved and restored with the optimizer.

5. Inductor with dynamic shapes (``compile_blocks``; applied by the first block compilation, since importing
   inductor at ``import vt_backbones`` would cost seconds). torch 2.13's inductor orders the symbolic strides
   of some graph outputs without its ShapeEnv and fails on a comparison such as ``1 < s27**2`` ("cannot
   determine truth value of Relational"; pytorch/pytorch#185510, fix proposed in #185871): every Twins block
   failed to compile. ``torch._inductor.ir.get_fill_order`` is wrapped to take the ShapeEnv of the graph being
   compiled when it is called without one and the strides are symbolic, as the proposed fix does. Layout
   choice only: the compiled code computes the same values.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import os.path as osp
import pickle
import random
import re
import secrets
import zipfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from mmengine.device import get_device
from mmengine.dist import utils as dist_utils
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.model.utils import _BatchNormXd
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPERS, Registry
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner import runner as runner_module
from torch import nn

_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(owner: type, name: str) -> Callable:
    """Stand-in for ``getattr`` in weights-only loads: resolves HistoryBuffer's statistics only."""
    if owner is not HistoryBuffer or name not in _HISTORY_BUFFER_METHODS:
        raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not allowed in a weights-only load')
    return getattr(owner, name)


def _allow_mmengine_checkpoints() -> None:
    """Allowlist the non-tensor objects of mmengine checkpoints (adding twice is harmless)."""
    before = torch.serialization.get_safe_globals()

    def restore() -> None:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
    _UNDO.append(restore)
    multiarray = np._core.multiarray
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        multiarray._reconstruct,
        multiarray.scalar,
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        np.ndarray,
        np.dtype,
        np.dtypes.Float32DType,
        np.dtypes.Float64DType,
        np.dtypes.Int64DType,
    ])


def _patch_once(owner: Any, name: str, make_wrapper: Callable[[Callable], Callable]) -> None:
    """Replace ``owner.name`` by ``make_wrapper(original)`` unless that was done already (`remove_patches`
    puts the original back)."""
    original = getattr(owner, name)
    if getattr(original, '_vt_compat', False):
        return
    wrapper = functools.wraps(original)(make_wrapper(original))
    wrapper._vt_compat = True
    setattr(owner, name, wrapper)
    _UNDO.append(lambda: setattr(owner, name, original))


def _register_once(registry: Registry, name: str, module: type) -> None:
    """Register ``module`` as ``name`` in ``registry`` in place of the class there (put back by `remove_patches`)."""
    original = registry._module_dict.get(name)
    if original is module:
        return
    registry.register_module(name, module=module, force=True)
    _UNDO.append(lambda: registry._module_dict.pop(name) if original is None
                 else registry.register_module(name, module=original, force=True))


def _init_dist_without_cuda(original: Callable) -> Callable:
    """``_init_dist_pytorch`` for a machine without CUDA."""
    def init(backend: str, init_backend: str = 'torch', **kwargs: Any) -> None:
        if init_backend != 'torch':
            return original(backend, init_backend=init_backend, **kwargs)
        # Same env:// init as mmengine, minus torch.cuda.set_device; nccl needs CUDA.
        torch.distributed.init_process_group(backend='gloo' if backend == 'nccl' else backend, **kwargs)
    return init


def _ddp_without_cuda(original: Callable) -> Callable:
    """``MMDistributedDataParallel.__init__`` for a CPU module."""
    def init(self: MMDistributedDataParallel, module: nn.Module, detect_anomalous_params: bool = False,
             **kwargs: Any) -> None:
        kwargs.pop('device_ids', None)  # DDP takes no device_ids for a CPU module
        original(self, revert_sync_batchnorm(module), detect_anomalous_params, **kwargs)
    return init


def _build_syncbn_as_bn() -> None:
    """Make ``norm_cfg=dict(type='SyncBN')`` build a plain BatchNorm."""
    try:
        import mmcv.cnn  # noqa: F401  registers 'SyncBN' itself, so ours must come after it
    except ImportError:
        return  # without mmcv nothing registers or builds 'SyncBN'
    _register_once(MODELS, 'SyncBN', _BatchNormXd)


# ---- 3. crash-safe checkpoints, reproducible resume ----------------------------------------------
def _atomic_put(original: Callable) -> Callable:
    """``LocalBackend.put`` writing a temporary file and renaming it: never a half-written target."""
    def put(self: LocalBackend, obj: bytes, filepath: str | os.PathLike) -> None:
        directory, name = osp.split(osp.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        tmp = osp.join(directory, f'.{name}.{secrets.token_hex(8)}.tmp')
        # open()'s mode 0o666 less the umask, as mmengine's plain write gives (mkstemp's 0o600 hid checkpoints
        # from the group).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.replace(tmp, filepath)
        except BaseException:
            os.unlink(tmp)
            raise
    return put


_STEP_CHECKPOINT = re.compile(r'_(\d+)\.pth$')


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` is not a complete checkpoint (``None`` when it is): missing, truncated, corrupt.

    mmengine saves torch's zip format; a file cut short loses the archive's central directory at its
    end, and a damaged member fails its CRC-32.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f'it is not a complete checkpoint ({err}): a truncated or interrupted write'
    return None if bad is None else f'its member {bad} fails its CRC check'


def _resume_from_intact(original: Callable) -> Callable:
    """``find_latest_checkpoint`` that skips a missing or damaged latest file for the newest intact one."""
    def find(path: str) -> str | None:
        latest = original(path)
        if not latest or checkpoint_problem(latest) is None:
            return latest
        folder = osp.dirname(latest) or path
        steps = {osp.join(folder, name): int(match.group(1)) for name in os.listdir(folder)
                 if not name.startswith('.') and (match := _STEP_CHECKPOINT.search(name))}
        older = sorted((f for f in steps if osp.abspath(f) != osp.abspath(latest)), key=steps.get, reverse=True)
        fallback = next((f for f in older if checkpoint_problem(f) is None), None)
        message = f'The latest checkpoint {latest} (named in {osp.join(path, "last_checkpoint")}) cannot be ' \
                  f'resumed: {checkpoint_problem(latest)}. '
        if fallback is None:
            raise RuntimeError(message + f'No other intact checkpoint in {folder}.')
        print_log(message + f'Resuming from the previous one, {fallback}.', logger='current', level=logging.WARNING)
        return fallback
    return find


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator


def iteration_seed(run_seed: int, index: int) -> int:
    """A 32-bit seed for iteration (or epoch) ``index`` of a run seeded with ``run_seed``."""
    return int(np.random.SeedSequence([run_seed & 0xFFFFFFFF, index]).generate_state(1)[0])


class _SeededBatches:
    """The train loop's batch iterator, reseeding before each fetch; the first ``replayed`` fetches are the
    batches a resumed iteration-based loop draws again to skip them, and are left alone."""

    def __init__(self, batches: Iterator, loop: IterBasedTrainLoop, run_seed: int, replayed: int) -> None:
        self.batches, self.loop, self.run_seed, self.replayed = batches, loop, run_seed, replayed

    def __iter__(self) -> _SeededBatches:
        return self

    def __next__(self) -> Any:
        if self.replayed:
            self.replayed -= 1
        else:
            _seed_all(iteration_seed(self.run_seed, self.loop.iter))
        return next(self.batches)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batches, name)


@HOOKS.register_module(force=True)
class IterationSeedHook(Hook):
    """Makes a resumed run draw the random numbers of the uninterrupted one (see the module docstring).

    Iteration-based loops are reseeded before every batch, exactly. Epoch-based loops (which resume at
    epoch boundaries) are reseeded at each epoch start; their data workers keep mmengine's own seeding.
    """
    priority = 'LOWEST'  # after everything else that runs before the first batch

    def before_train_epoch(self, runner: Any) -> None:
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            if not isinstance(loop.dataloader_iterator, _SeededBatches):
                loop.dataloader_iterator = _SeededBatches(loop.dataloader_iterator, loop, runner.seed, loop.iter)
        else:
            _seed_all(iteration_seed(runner.seed, runner.epoch))


# ---- 4. AMP without CUDA ---------------------------------------------------------------------------
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN: AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class CpuAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` where mmengine finds no accelerator: bf16 autocast on the CPU (or fp32), unscaled."""

    def __init__(self, loss_scale: str | float | dict = 'dynamic', dtype: str | torch.dtype | None = None,
                 use_fsdp: bool = False, **kwargs: Any) -> None:
        OptimWrapper.__init__(self, **kwargs)  # mmengine's __init__ asserts CUDA/NPU/MLU/MUSA
        requested = str(dtype).removeprefix('torch.') if isinstance(dtype, torch.dtype) else dtype
        if requested not in (None, 'float16', 'bfloat16'):
            raise ValueError(f"optim_wrapper.dtype on a CPU must be 'bfloat16', 'float16' or None, got {dtype!r}")
        native = cpu_has_native_bf16()
        self.cast_dtype = torch.bfloat16 if requested == 'bfloat16' or native else None
        # bf16 keeps fp32's exponent range: no loss scaling. A disabled scaler's scale/unscale/step/update
        # are plain backward and optimizer.step (and clip_grad still clips the true gradients).
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
        self._scale_update_param = None
        precision = 'bf16 autocast' if self.cast_dtype else 'fp32 (AMP off)'
        support = 'computes bf16 natively' if native else 'has no native bf16 (emulated bf16 is many times slower)'
        print_log(f'AmpOptimWrapper without CUDA: {precision}, no loss scaling; the CPU {support}; the config '
                  f'asked dtype={dtype!r}, loss_scale={loss_scale!r}.', logger='current')

    def state_dict(self) -> dict:
        return OptimWrapper.state_dict(self)  # no 'loss_scaler': a disabled scaler has no state

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        if self.cast_dtype is None:  # fp32
            with OptimWrapper.optim_context(self, model):
                yield
        else:
            with OptimWrapper.optim_context(self, model), torch.autocast('cpu', dtype=self.cast_dtype):
                yield


def _fp32_under_cpu_autocast(original: Callable) -> Callable:
    """An mmcv op ``op(tensor, tensor, ...)`` whose CPU kernel takes no bf16, run in fp32 under CPU autocast."""
    def op(first: Any, second: Any, *args: Any, **kwargs: Any) -> Any:
        on_cpu = isinstance(first, torch.Tensor) and first.device.type == 'cpu'  # nms also takes numpy arrays
        if not on_cpu or not torch.is_autocast_enabled('cpu'):
            return original(first, second, *args, **kwargs)
        with torch.autocast('cpu', enabled=False):
            return original(first.float(), second.float(), *args, **kwargs)
    return op


def _roi_align_under_cpu_autocast(original: Callable) -> Callable:
    """``roi_align`` in fp32 under CPU autocast, its output in the features' dtype (mmdet's RoI extractor
    writes it into a tensor made like the features)."""
    fp32 = _fp32_under_cpu_autocast(original)

    def roi_align(features: torch.Tensor, rois: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return fp32(features, rois, *args, **kwargs).to(features.dtype)
    return roi_align


def _mmcv_ops_in_fp32_under_cpu_autocast() -> None:
    try:  # the modules (mmcv.ops re-exports functions of the same names)
        nms_module = importlib.import_module('mmcv.ops.nms')
        roi_align_module = importlib.import_module('mmcv.ops.roi_align')
    except ImportError:  # mmcv without its compiled ops (mmcv-lite)
        return
    # RoIAlign.forward and batched_nms look these names up in their modules at call time.
    _patch_once(roi_align_module, 'roi_align', _roi_align_under_cpu_autocast)
    _patch_once(nms_module, 'nms', _fp32_under_cpu_autocast)


# ---- applying the fixes -----------------------------------------------------------------------------
#: ``VT_BACKBONES_NO_PATCHES=1``: ``import vt_backbones`` leaves mmengine, mmcv and torch as they are.
DISABLE_ENV = 'VT_BACKBONES_NO_PATCHES'
_UNDO: list[Callable[[], None]] = []  # how to revert each applied fix, in the order applied


def patches_applied() -> bool:
    return bool(_UNDO)


def apply_patches() -> None:
    """Applies the fixes of the module docstring, once (a second call does nothing). ``import vt_backbones``
    calls it unless the environment sets ``VT_BACKBONES_NO_PATCHES=1``; `remove_patches` reverts it."""
    if _UNDO:
        return
    # 1. mmengine's own checkpoints load under torch's weights-only default.
    _allow_mmengine_checkpoints()
    # 3. Checkpoint files are written atomically; resume=True skips a damaged latest checkpoint.
    _patch_once(LocalBackend, 'put', _atomic_put)
    _patch_once(runner_module, 'find_latest_checkpoint', _resume_from_intact)
    if get_device() == 'cpu':  # never on a machine with CUDA: GPU runs keep mmengine's code paths
        # 2. The pytorch launcher, DDP and SyncBN without CUDA.
        _patch_once(dist_utils, '_init_dist_pytorch', _init_dist_without_cuda)
        _patch_once(MMDistributedDataParallel, '__init__', _ddp_without_cuda)
        _build_syncbn_as_bn()
        # 4. AMP on the CPU: bf16 autocast (or fp32), mmcv's RoIAlign and NMS in fp32 under it.
        _register_once(OPTIM_WRAPPERS, 'AmpOptimWrapper', CpuAmpOptimWrapper)
        _mmcv_ops_in_fp32_under_cpu_autocast()


def _fill_order_with_graph_shape_env(get_fill_order: Callable) -> Callable:
    import sympy  # loaded by inductor already

    def fill_order(seq: Any, shape_env: Any = None) -> Any:
        if shape_env is None and any(isinstance(s, (torch.SymInt, sympy.Expr)) and not isinstance(s, sympy.Integer)
                                     for s in seq):
            from torch._inductor.virtualized import V
            shape_env = getattr(getattr(V.graph, 'sizevars', None), 'shape_env', None)
        return get_fill_order(seq, shape_env)
    return fill_order


def prepare_block_compilation() -> None:
    """Fix 5 of the module docstring, if the fixes are applied (`apply_patches`); called by the first
    ``compile_blocks`` compilation."""
    if patches_applied():
        from torch._inductor import ir as inductor_ir
        _patch_once(inductor_ir, 'get_fill_order', _fill_order_with_graph_shape_env)


def remove_patches() -> None:
    """Reverts everything `apply_patches` changed (e.g. to compare with plain mmengine in one process)."""
    while _UNDO:
        _UNDO.pop()()

"""vt_backbones.compat: weights-only loading of mmengine checkpoints, distributed runs without CUDA, crash-safe
checkpoint writes and resume.

The toy model, dataset, metric and hook are registered in mmengine's root registries under
``CompatToy*`` names; the 2-process runs (these and test_reliability's failing-rank job) import this module
through ``custom_imports``.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest
import torch
from mmcv.cnn import build_norm_layer
from mmengine.device import get_device
from mmengine.dist import utils as dist_utils
from mmengine.evaluator import BaseMetric
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel, MMDistributedDataParallel
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner import runner as runner_module
from torch import nn
from torch.utils.data import Dataset

import vt_backbones.compat  # noqa: F401  the module under test
from vt_backbones.engine.checkpoints import checkpoint_problem

from conftest import ROOT, RunsCommand, free_port, run_tool

cpu_only = pytest.mark.skipif(get_device() != 'cpu', reason='the distributed fallbacks apply only without CUDA')


@MODELS.register_module(force=True)
class CompatToyModel(BaseModel):
    """Linear regression with a norm layer from ``norm_cfg``."""

    def __init__(self, norm_cfg: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.linear = nn.Linear(2, 4)
        self.norm_name, norm = build_norm_layer(norm_cfg or dict(type='BN1d'), 4)
        self.add_module(self.norm_name, norm)
        self.head = nn.Linear(4, 1)

    def forward(self, inputs: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                mode: str = 'tensor') -> Any:
        x = torch.stack(list(inputs))
        out = self.head(getattr(self, self.norm_name)(self.linear(x))).squeeze(1)
        y = torch.stack(list(labels))
        if mode == 'loss':
            return dict(loss=((out - y) ** 2).mean())
        return [dict(pred=p, label=t) for p, t in zip(out, y)]


@DATASETS.register_module(force=True)
class CompatToyDataset(Dataset):
    metainfo = dict(classes=('toy',))

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=torch.tensor([i / 16, 1.0]), labels=torch.tensor(float(i % 2)))


@METRICS.register_module(force=True)
class CompatToyMetric(BaseMetric):
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        self.results.extend(float((s['pred'] - s['label']) ** 2) for s in data_samples)

    def compute_metrics(self, results: list) -> dict:
        # np.float32 like mmseg's IoUMetric: with save_best it lands in message_hub's runtime_info
        return dict(mse=np.float32(np.mean(results)), count=len(results))


@HOOKS.register_module(force=True)
class CompatToyProbeHook(Hook):
    """Records what each rank saw into ``<work_dir>/probe_rank<r>.json``."""

    def after_train(self, runner: Runner) -> None:
        model = runner.model
        record = dict(
            rank=runner.rank, world_size=runner.world_size, iter=runner.iter,
            backend=torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            wrapper=type(model).__name__, device_ids=getattr(model, 'device_ids', None),
            norms=sorted({type(m).__name__ for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}),
            val_count=int(runner.message_hub.get_scalar('val/count').current()))
        Path(runner.work_dir, f'probe_rank{runner.rank}.json').write_text(json.dumps(record))


class RecordIterHook(Hook):
    """Remembers the iteration training starts from and how many iterations run."""

    def before_train(self, runner: Runner) -> None:
        self.start_iter = runner.iter
        self.steps = 0

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.steps += 1


def toy_runner(work_dir: Path, name: str, max_iters: int, **kwargs: Any) -> Runner:
    return Runner(
        model=dict(type='CompatToyModel'), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=dict(dataset=dict(type='CompatToyDataset'), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[dict(type='MultiStepLR', milestones=[2], by_epoch=False)],
        val_dataloader=dict(dataset=dict(type='CompatToyDataset'), batch_size=4, num_workers=0,
                            sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=dict(type='CompatToyMetric'), val_cfg=dict(),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=3),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False,
                                           save_best='mse', rule='less')),
        randomness=dict(seed=0), **kwargs)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trains 3 iterations, validates once and saves ``iter_3.pth`` and ``best_mse_iter_3.pth``."""
    work_dir = tmp_path_factory.mktemp('toy')
    toy_runner(work_dir, 'compat_toy_train', max_iters=3).train()
    return work_dir / 'iter_3.pth'


def test_default_torch_load_accepts_mmengine_checkpoint(checkpoint: Path) -> None:
    ckpt = torch.load(checkpoint)  # torch's default: weights_only=True
    assert ckpt['meta']['iter'] == 3
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and len(loss.data[0]) == 3
    assert np.isfinite(loss.statistics('mean'))
    assert isinstance(ckpt['message_hub']['runtime_info']['eta'], np.float64)
    best = torch.load(checkpoint.with_name('best_mse_iter_3.pth'))
    assert isinstance(best['message_hub']['runtime_info']['best_score'], np.float32)
    for path in (checkpoint, checkpoint.with_name('best_mse_iter_3.pth')):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []  # none left unallowed


def test_resume_restores_iteration_and_optimizer(checkpoint: Path, tmp_path: Path) -> None:
    record = RecordIterHook()
    runner = toy_runner(tmp_path, 'compat_toy_resume', max_iters=4, resume=True, load_from=str(checkpoint),
                        custom_hooks=[record])
    runner.train()
    assert (record.start_iter, record.steps, runner.iter) == (3, 1, 4)
    adam_steps = {float(s['step']) for s in runner.optim_wrapper.optimizer.state.values()}
    assert adam_steps == {4.0}  # 3 restored + 1 new; a fresh optimizer would say 1
    assert runner.optim_wrapper.get_lr()['lr'] == [pytest.approx(0.001)]  # MultiStepLR past its milestone


def test_load_checkpoint_and_pretrained_init(checkpoint: Path) -> None:
    saved = torch.load(checkpoint)['state_dict']
    model = CompatToyModel()
    load_checkpoint(model, str(checkpoint), map_location='cpu')
    pretrained = CompatToyModel(init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)))
    pretrained.init_weights()
    for m in (model, pretrained):
        for key, value in m.state_dict().items():
            assert torch.equal(value, saved[key]), key


class _ReachesAttribute:
    def __reduce__(self) -> tuple:
        return getattr, (HistoryBuffer, 'register_statistics')


@pytest.mark.parametrize('payload', ['os.system', 'getattr', 'object array'])
def test_unsafe_checkpoints_are_still_rejected(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / 'pwned'
    obj = {'os.system': RunsCommand(marker), 'getattr': _ReachesAttribute(),
           'object array': np.array([1, 'a'], dtype=object)}[payload]
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': obj}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


def test_numpy1_checkpoint_names_load() -> None:
    buf = io.BytesIO()
    torch.save(dict(hub=HistoryBuffer([1.0, 2.0], [1, 1]), eta=np.float64(2.5)), buf,
               _use_new_zipfile_serialization=False)  # legacy format: the pickle's GLOBALs are plain text
    numpy1 = buf.getvalue().replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in numpy1
    loaded = torch.load(io.BytesIO(numpy1))
    assert loaded['hub'].mean() == 1.5 and loaded['eta'] == 2.5


@cpu_only
def test_syncbn_builds_as_batchnorm() -> None:
    name, layer = build_norm_layer(dict(type='SyncBN', requires_grad=True), 8)
    assert name == 'bn' and not isinstance(layer, nn.SyncBatchNorm)
    assert isinstance(layer, nn.modules.batchnorm._BatchNorm)
    out = layer.train()(torch.randn(2, 8, 5, 5))
    assert out.shape == (2, 8, 5, 5) and layer.num_batches_tracked.item() == 1


@cpu_only
def test_mmseg_head_with_syncbn_runs_on_cpu() -> None:
    seg_models = pytest.importorskip('mmseg.registry').MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):  # as a config's default_scope does
        head = seg_models.build(dict(type='FCNHead', in_channels=8, channels=8, num_convs=1, num_classes=3,
                                     norm_cfg=dict(type='SyncBN', requires_grad=True)))
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in head.modules())
    assert head.train()([torch.randn(2, 8, 6, 6)]).shape == (2, 3, 6, 6)


PATCH_STATE = """
import json, sys, torch
from mmengine.dist import utils as dist_utils
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import HistoryBuffer
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODELS, OPTIM_WRAPPERS
from mmengine.runner import runner as runner_module
import mmcv.cnn
import vt_backbones
from vt_backbones import compat

def state():
    functions = (LocalBackend.put, runner_module.find_latest_checkpoint, dist_utils._init_dist_pytorch,
                 MMDistributedDataParallel.__init__)
    return dict(wrapped=[getattr(f, '_vt_compat', False) for f in functions],
                syncbn=MODELS.get('SyncBN').__name__, amp=OPTIM_WRAPPERS.get('AmpOptimWrapper').__name__,
                allowlisted=HistoryBuffer in torch.serialization.get_safe_globals(),
                registered=vt_backbones.create_backbone('swin_t').__class__.__name__)

states = [state()]
compat.apply_patches()
compat.apply_patches()
states.append(state())
compat.remove_patches()
states.append(state())
json.dump(states, sys.stdout)
"""


@cpu_only
def test_patches_opt_out_apply_and_remove() -> None:
    """VT_BACKBONES_NO_PATCHES=1: the import leaves mmengine as it is; apply_patches (twice: once) then
    remove_patches patch and restore it."""
    out = run_tool(sys.executable, '-c', PATCH_STATE, env={'VT_BACKBONES_NO_PATCHES': '1'})
    untouched, patched, removed = json.loads(out.stdout)
    plain = dict(wrapped=[False] * 4, syncbn='SyncBatchNorm', amp='AmpOptimWrapper', allowlisted=False,
                 registered='SwinTransformer')
    assert untouched == plain and removed == plain
    assert patched == dict(wrapped=[True] * 4, syncbn='_BatchNormXd', amp='CpuAmpOptimWrapper', allowlisted=True,
                           registered='SwinTransformer')


def test_reapplying_patches_changes_nothing() -> None:
    def patched() -> tuple:
        return (MMDistributedDataParallel.__init__, dist_utils._init_dist_pytorch, MODELS.get('SyncBN'),
                LocalBackend.put, runner_module.find_latest_checkpoint)
    before = patched()
    vt_backbones.compat.apply_patches()
    assert patched() == before


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / 'iter_2.pth'
    LocalBackend().put(b'complete', target)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # what a plain open() gives, as mmengine's put
    with pytest.raises(TypeError):
        LocalBackend().put(object(), target)  # the write fails (as a process killed mid-write stops)
    assert target.read_bytes() == b'complete' and os.listdir(tmp_path) == ['iter_2.pth']  # no temp file left


def flip_a_tensor_byte(path: Path) -> None:
    """Corrupts one byte of the first tensor's data inside a torch zip checkpoint."""
    with zipfile.ZipFile(path) as archive:
        member = next(info for info in archive.infolist() if '/data/' in info.filename)
    data = bytearray(path.read_bytes())
    header = data[member.header_offset:member.header_offset + 30]  # the local file header
    name_length, extra_length = int.from_bytes(header[26:28], 'little'), int.from_bytes(header[28:30], 'little')
    start = member.header_offset + 30 + name_length + extra_length
    data[start + 10] ^= 0xFF
    path.write_bytes(bytes(data))


def test_resume_skips_a_damaged_latest_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for step in (2, 4, 6):
        torch.save({'meta': {'iter': step}, 'state_dict': {'w': torch.randn(64)}}, tmp_path / f'iter_{step}.pth')
    (tmp_path / 'best_mse_iter_2.pth').write_bytes((tmp_path / 'iter_2.pth').read_bytes())
    latest = tmp_path / 'iter_6.pth'
    (tmp_path / 'last_checkpoint').write_text(str(latest))
    assert runner_module.find_latest_checkpoint(str(tmp_path)) == str(latest)  # intact: unchanged

    data = latest.read_bytes()
    latest.write_bytes(data[:len(data) // 2])  # a write cut short
    flip_a_tensor_byte(tmp_path / 'iter_4.pth')
    assert 'truncated' in checkpoint_problem(str(latest)) and 'CRC' in checkpoint_problem(str(tmp_path / 'iter_4.pth'))
    assert runner_module.find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')

    for name in ('iter_2.pth', 'best_mse_iter_2.pth'):
        (tmp_path / name).unlink()
    with pytest.raises(RuntimeError, match='cannot be resumed: .* No other intact checkpoint'):
        runner_module.find_latest_checkpoint(str(tmp_path))


DIST_CONFIG = """
custom_imports = dict(imports=['test_compat'], allow_failed_imports=False)
model = dict(type='CompatToyModel', norm_cfg=dict(type='SyncBN'))
sync_bn = 'torch'
env_cfg = dict(dist_cfg=dict(backend='nccl'))
train_dataloader = dict(dataset=dict(type='CompatToyDataset'), batch_size=2, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(dataset=dict(type='CompatToyDataset'), batch_size=2, num_workers=0,
                      sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='CompatToyMetric')
val_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False))
custom_hooks = [dict(type='CompatToyProbeHook')]
randomness = dict(seed=0)
test_dataloader = val_dataloader
test_evaluator = val_evaluator
test_cfg = dict()
"""


def run_dist_tool(tmp_path: Path, script: str, *args: str) -> None:
    """Runs ``tools/<script>`` with 2 CPU processes on :data:`DIST_CONFIG`, which imports this module."""
    config = tmp_path / 'toy_dist.py'
    config.write_text(DIST_CONFIG)
    run_tool('bash', f'tools/{script}', str(config), *args, env={'PORT': free_port()}, timeout=120)


@pytest.mark.slow
@cpu_only
def test_dist_train_two_cpu_processes(tmp_path: Path) -> None:
    work_dir = tmp_path / 'work'
    run_dist_tool(tmp_path, 'dist_train.sh', '2', '--work-dir', str(work_dir))
    for rank in (0, 1):
        record = json.loads((work_dir / f'probe_rank{rank}.json').read_text())
        assert record == dict(rank=rank, world_size=2, iter=2, backend='gloo', wrapper='MMDistributedDataParallel',
                              device_ids=None, norms=['_BatchNormXd'], val_count=16)
    assert (work_dir / 'iter_2.pth').exists()


@pytest.mark.slow
@cpu_only
def test_dist_test_two_cpu_processes(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / 'preds.pkl'
    run_dist_tool(tmp_path, 'dist_test.sh', str(checkpoint), '2', '--work-dir', str(tmp_path / 'work'),
                  '--out', str(out))
    with open(out, 'rb') as f:
        assert len(pickle.load(f)) == 16  # both ranks' halves of the test set


def backend_threads() -> list[str]:
    """The names of this process's gloo threads (its C++ threads are invisible to ``threading``)."""
    names = (Path(f'/proc/self/task/{task}/comm').read_text().strip() for task in os.listdir('/proc/self/task'))
    return sorted(name for name in names if 'gloo' in name)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads the thread names from /proc')
def test_end_distributed_run_joins_the_backend_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 20: the gloo threads must be gone before the interpreter finalizes. A DDP model inside a reference
    cycle (as the Runner's, which its hooks and loops refer back to) also holds the group, and
    destroy_process_group alone leaves the threads running (torch 2.13)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, 'tools'))
    from cli_common import end_distributed_run
    assert backend_threads() == [] and not torch.distributed.is_initialized()
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        cycle: dict = dict(model=nn.parallel.DistributedDataParallel(nn.Linear(2, 1)))
        cycle['self'] = cycle
        cycle['model'](torch.ones(2, 2)).sum().backward()  # the reducer's allreduce
        gathered = [None]
        torch.distributed.all_gather_object(gathered, {'rank': 0})  # Python-made tensors, as collect_results
        assert backend_threads() == ['gloo_tcp_loop', 'pt_gloo_runloop', 'pt_gloo_runloop']
        del cycle
        end_distributed_run()
        assert backend_threads() == [] and not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

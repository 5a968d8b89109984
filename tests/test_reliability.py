"""Reliability (issues 15, 20): official training checkpoints holding non-tensor objects, crash and resume, torn
checkpoint files, a failing rank, distributed runs that exit 0 every time.

The training scenarios run the real tools (tools/train.py, tools/dist_train.sh, which add IterationSeedHook):
crash and resume on `make demo`'s Mask R-CNN on the mini COCO (shrunk for time), a failing rank on a toy
regression (test_compat's toy model and data). The training processes import this module (``custom_imports``)
for two test hooks: one records every iteration's losses per rank, one makes a rank raise where the
``VTB_TEST_FAULT`` environment variable says.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

import vt_backbones  # noqa: F401  (vt_backbones.compat: weights-only loading, crash-safe checkpoints)
from vt_backbones.engine.checkpoints import checkpoint_problem
from vt_backbones.convert import ConversionError, convert_file, convert_state_dict, read_checkpoint

from conftest import ROOT, RunsCommand, free_port, run_tool, tool_env, train, train_command


# ---- hooks the training processes load ----------------------------------------------------------
@HOOKS.register_module(force=True)
class ReliabilityLossRecorder(Hook):
    """Appends ``{"iter": i, <every value the model logged>: ...}`` of each training iteration, unrounded, to
    ``<work_dir>/losses_rank<r>.jsonl`` (one write a line)."""

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        record = dict(iter=runner.iter + 1, **{name: float(value) for name, value in outputs.items()})
        with open(Path(runner.work_dir, f'losses_rank{runner.rank}.jsonl'), 'a') as f:
            f.write(json.dumps(record) + '\n')


@HOOKS.register_module(force=True)
class ReliabilityFaultHook(Hook):
    """``VTB_TEST_FAULT=<rank>:<iteration>``: that rank raises at the start of that iteration, as a bad sample
    makes it."""

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        fault = os.environ.get('VTB_TEST_FAULT')
        if not fault:
            return
        rank, iteration = fault.split(':')
        if runner.rank == int(rank) and runner.iter + 1 == int(iteration):
            Path(runner.work_dir, 'fault_time').write_text(repr(time.time()))
            raise RuntimeError(f'injected failure on rank {rank} at iteration {iteration}')


# ---- 1. official training checkpoints with non-tensor objects -----------------------------------
class CfgNode(dict):
    """yacs' CfgNode as the Swin codebase saves it (a dict subclass with attributes), from a module that is not
    installed when the file is read."""
    __module__ = 'yacs_not_installed.config'

    def __init__(self, entries: dict) -> None:
        super().__init__(entries)
        self.__dict__['_frozen'] = True


class WholeModel:
    """A pickled object that holds the weights itself (as ``torch.save(model)`` does)."""

    def __init__(self, state_dict: dict) -> None:
        self.weights = state_dict


def save_with_absent_module(obj: Any, path: Path) -> None:
    """torch.save ``obj`` while ``yacs_not_installed.config`` exists, then make the module vanish again."""
    package, module = types.ModuleType('yacs_not_installed'), types.ModuleType('yacs_not_installed.config')
    module.CfgNode = CfgNode
    sys.modules.update({'yacs_not_installed': package, 'yacs_not_installed.config': module})
    try:
        torch.save(obj, path)
    finally:
        del sys.modules['yacs_not_installed'], sys.modules['yacs_not_installed.config']


@pytest.fixture
def swin_weights() -> dict[str, torch.Tensor]:
    from test_convert import fake_official  # the official Swin-T keys, shapes and dtypes
    return fake_official('swin_t')


def convert_weights_cli() -> Any:
    """``main`` of tools/convert_weights.py, run in this process."""
    spec = importlib.util.spec_from_file_location('convert_weights', os.path.join(ROOT, 'tools', 'convert_weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def official_training_checkpoint(weights: dict, marker: Path) -> dict:
    """What the Swin / DeiT-style trainers save, plus a command hidden in an object."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))])
    optimizer.param_groups[0]['params'][0].grad = torch.ones(3)
    optimizer.step()
    return {
        'model': weights,
        'config': CfgNode({'MODEL': CfgNode({'TYPE': 'swin', 'DROP_PATH_RATE': 0.2}), 'AMP_OPT_LEVEL': 'O1'}),
        'args': argparse.Namespace(model='swin_tiny', lr=1e-3),
        'optimizer': optimizer.state_dict(),
        'lr_scheduler': {'last_epoch': 300, 'base_lrs': [1e-3]},
        'scaler': {'scale': 65536.0, 'growth_factor': 2.0, '_growth_tracker': 17},
        'max_accuracy': np.float64(81.2),
        'epoch': np.int64(299),
        'hook': RunsCommand(marker),
    }


def test_training_checkpoint_converts_without_running_its_objects(swin_weights, tmp_path, capsys):
    marker = tmp_path / 'command_ran'
    src = tmp_path / 'official.pth'
    save_with_absent_module(official_training_checkpoint(swin_weights, marker), src)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(src)  # weights-only refuses the file: the restricted reader is what reads it

    assert convert_weights_cli()([str(src), str(tmp_path / 'converted.pth')]) == 0
    printed = capsys.readouterr().out
    assert not marker.exists() and 'yacs_not_installed' not in sys.modules  # nothing imported, nothing run

    skipped = {'config': 'yacs_not_installed.config.CfgNode', 'args': 'argparse.Namespace',
               'hook': f'{os.system.__module__}.system'}
    assert 'skipped 3 non-tensor objects' in printed and all(f'{k} ({v})' in printed for k, v in skipped.items())
    converted = torch.load(tmp_path / 'converted.pth')  # weights-only
    assert converted['meta']['skipped'] == skipped
    expected, _ = convert_state_dict(dict(swin_weights), model_name='swin_t')  # the bare weights, converted
    assert converted['state_dict'].keys() == expected.keys()
    assert all(torch.equal(converted['state_dict'][k], v) for k, v in expected.items())

    checkpoint = read_checkpoint(str(src))  # the rest of the file, as read
    assert type(checkpoint['max_accuracy']) is np.float64 and checkpoint['max_accuracy'] == 81.2
    assert type(checkpoint['epoch']) is np.int64 and checkpoint['epoch'] == 299
    assert checkpoint['scaler'] == {'scale': 65536.0, 'growth_factor': 2.0, '_growth_tracker': 17}
    assert torch.equal(checkpoint['optimizer']['state'][0]['exp_avg'], torch.full((3,), 0.1))
    assert checkpoint['args'].state == {'model': 'swin_tiny', 'lr': 1e-3}  # kept as inert data
    assert checkpoint['hook'].args == (f'touch {marker}',)


def test_unreachable_weights_are_refused_clearly(swin_weights, tmp_path):
    marker = tmp_path / 'command_ran'
    src = tmp_path / 'whole_model.pth'
    torch.save({'model': WholeModel(swin_weights), 'hook': RunsCommand(marker)}, src)
    with pytest.raises(ConversionError, match=r"no state_dict found.*'model': '.*WholeModel'"):
        convert_file(str(src), str(tmp_path / 'out.pth'))
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_damaged_file_is_refused_clearly(swin_weights, tmp_path):
    src = tmp_path / 'official.pth'
    save_with_absent_module(official_training_checkpoint(swin_weights, tmp_path / 'marker'), src)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    with pytest.raises(ConversionError, match='cannot read checkpoint'):
        read_checkpoint(str(src))
    assert checkpoint_problem(str(src)) is not None


# ---- 2-3. crash and resume, torn checkpoints: Mask R-CNN on the mini COCO --------------------------------
DEMO_CONFIG = os.path.join(ROOT, 'configs', 'demo', 'maskrcnn_shuffle_t_mini.py')  # what `make demo` trains
# The CPU on any machine (CUDA's atomics are not deterministic), one thread a process: two threads competing with
# the other tests' processes for 2 cores made each iteration up to 10x slower.
CPU = {'CUDA_VISIBLE_DEVICES': '', 'OMP_NUM_THREADS': '1'}
# Losses of a resumed iteration against the uninterrupted run's: equal on this machine (measured difference 0);
# the bound leaves room for a platform whose kernels round differently from process to process.
LOSS_TOLERANCE = dict(rel=1e-6, abs=1e-7)


@pytest.fixture(scope='module')
def mini_config(tmp_path_factory) -> str:
    """`make demo`'s Mask R-CNN config on a fresh mini COCO (4 training images), shrunk for time: 4 iterations of
    one 96x64 image per process, a checkpoint every 2, every loss recorded per rank, a narrow model (Shuffle
    backbone C = 32, depths 2-2-2-2; 64-channel FPN and heads: 37 MB checkpoints instead of 577 MB), fewer sampled
    RoIs, no validation. Every random draw of the recipe stays: drop path, flips, the shuffled sampler, the RPN and
    RoI samplers."""
    tmp = tmp_path_factory.mktemp('mini')
    run_tool(sys.executable, 'tools/make_mini_data.py', '--out', str(tmp / 'data'), '--num-train', '4',
             '--num-val', '1')
    config = tmp / 'mini.py'
    config.write_text(f'''
_base_ = {DEMO_CONFIG!r}
custom_imports = dict(imports=['vt_backbones', 'test_reliability'], allow_failed_imports=False)
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64), bbox_head=dict(in_channels=64, fc_out_channels=128),
        mask_roi_extractor=dict(out_channels=64), mask_head=dict(num_convs=1, in_channels=64, conv_out_channels=64)),
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rcnn=dict(sampler=dict(num=32))))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(96, 64), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=1, dataset=dict(data_root='{tmp}/data/coco/', pipeline=train_pipeline))
val_dataloader = val_evaluator = val_cfg = test_dataloader = test_evaluator = test_cfg = None
train_cfg = dict(max_iters=4)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3), logger=dict(interval=1))
custom_hooks = [dict(type='ReliabilityLossRecorder')]
''')
    return str(config)


def losses(work: Path, rank: int = 0) -> dict[int, dict[str, float]]:
    """Every loss (and accuracy) a rank logged, by iteration; a resumed run's entries replace the earlier ones.
    A line still being written is left out."""
    path = work / f'losses_rank{rank}.jsonl'
    text = path.read_text() if path.exists() else ''
    records = map(json.loads, text[:text.rfind('\n') + 1].splitlines())
    return {record.pop('iter'): record for record in records}


def assert_same_losses(actual: dict[int, dict], expected: dict[int, dict], iterations: list[int]) -> None:
    for i in iterations:
        assert actual[i] == {k: pytest.approx(v, **LOSS_TOLERANCE) for k, v in expected[i].items()}, f'iteration {i}'


def kill_job(process: subprocess.Popen) -> None:
    """SIGKILL every process group of a training job, as a scheduler ending a job does: the launcher's and, under
    torchrun, each worker's (torchrun starts every worker in a session of its own)."""
    workers = psutil.Process(process.pid).children(recursive=True)
    for group in {os.getpgid(pid) for pid in [process.pid, *(worker.pid for worker in workers)]}:
        os.killpg(group, signal.SIGKILL)
    process.wait(timeout=60)  # before psutil, which would reap the launcher and hide its exit status
    psutil.wait_procs(workers, timeout=60)


def train_until_killed(config: str, work: Path, gpus: int, checkpoint: int) -> int:
    """Trains ``config``, SIGKILLs the whole job as soon as ``iter_<checkpoint>.pth`` is written and every rank has
    logged the next iteration (so it dies computing the one after), and returns the launcher's exit status."""
    log_path = work.with_name(f'{work.name}.log')
    with open(log_path, 'w') as log:
        process = subprocess.Popen(train_command(config, work, gpus=gpus), cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, env=tool_env(PORT=free_port(), **CPU),
                                   start_new_session=True)
    try:
        deadline = time.time() + 600
        while not ((work / f'iter_{checkpoint}.pth').exists()
                   and all(checkpoint + 1 in losses(work, rank) for rank in range(gpus))):
            assert process.poll() is None, f'training ended before the kill:\n{log_path.read_text()[-5000:]}'
            assert time.time() < deadline, 'training did not reach the kill point in 600 s'
            time.sleep(0.05)
    finally:
        kill_job(process)
    return process.wait()


@pytest.mark.slow
@pytest.mark.parametrize('gpus, torn_latest', [(1, False), (2, True)], ids=['1_process', '2_processes_torn_latest'])
def test_sigkill_between_checkpoints_then_resume(mini_config, gpus, torn_latest, tmp_path):
    """An uninterrupted run against one killed between its checkpoints at iterations 2 and 4, then resumed.

    With 2 processes the resumed job also finds ``last_checkpoint`` naming a torn ``iter_4.pth`` (what a crash in
    a non-atomic write or an interrupted copy leaves; our own writes are atomic): every rank must fall back to
    ``iter_2.pth``."""
    reference, work = tmp_path / 'reference', tmp_path / 'work'
    train(mini_config, reference, gpus=gpus, env=CPU)
    assert train_until_killed(mini_config, work, gpus, checkpoint=2) == -signal.SIGKILL
    assert (work / 'last_checkpoint').read_text().endswith('iter_2.pth') and not (work / 'iter_4.pth').exists()
    before_kill = [losses(work, rank) for rank in range(gpus)]
    if torn_latest:
        latest = work / 'iter_4.pth'
        data = (reference / 'iter_4.pth').read_bytes()
        latest.write_bytes(data[:len(data) * 2 // 3])
        (work / 'last_checkpoint').write_text(str(latest))

    started = time.time()
    resumed = train(mini_config, work, '--resume', gpus=gpus, env=CPU)
    print(f'{gpus} process(es): the resumed run took {time.time() - started:.1f} s')
    log = resumed.stdout + resumed.stderr
    if torn_latest:
        assert f'The latest checkpoint {latest}' in log and 'cannot be resumed' in log
        assert f'Resuming from the previous one, {work / "iter_2.pth"}' in log
    assert 'resumed epoch: 0, iter: 2' in log
    for rank in range(gpus):
        assert_same_losses(before_kill[rank], losses(reference, rank), [1, 2, 3])  # the runs agree until the kill
        assert_same_losses(losses(work, rank), losses(reference, rank), [3, 4])  # ... and after the resume
    # After the resumed run's second update: the only check of the restored LR schedule (the first resumed update
    # takes its LR from the restored optimizer, so losses alone cannot tell).
    weights = torch.load(work / 'iter_4.pth')['state_dict']
    torch.testing.assert_close(weights, torch.load(reference / 'iter_4.pth')['state_dict'], rtol=1e-5, atol=1e-6)


# ---- 4. a failing rank: a toy job -------------------------------------------------------------------------
TOY_CONFIG = """
custom_imports = dict(imports=['test_compat', 'test_reliability'], allow_failed_imports=False)
model = dict(type='CompatToyModel')
train_dataloader = dict(dataset=dict(type='CompatToyDataset'), batch_size=4, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.01))
train_cfg = dict(by_epoch=False, max_iters=6)
default_hooks = dict(logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='ReliabilityFaultHook')]
randomness = dict(seed=0)
"""


@pytest.mark.slow
def test_failing_rank_stops_the_whole_job(tmp_path):
    config, work = tmp_path / 'toy.py', tmp_path / 'work'
    config.write_text(TOY_CONFIG)
    result = train(str(config), work, gpus=2, env={'VTB_TEST_FAULT': '1:3'}, check=False, timeout=180)
    stopped_after = time.time() - float((work / 'fault_time').read_text())
    assert result.returncode != 0
    summary = result.stderr[result.stderr.index('Root Cause (first observed failure)'):]
    assert 'rank      : 1' in summary  # torchrun's summary names the rank and shows its traceback (@record)
    assert 'RuntimeError: injected failure on rank 1 at iteration 3' in summary
    assert stopped_after < 60, f'the job took {stopped_after:.0f} s to stop after the failure'
    print(f'the job stopped {stopped_after:.1f} s after the failure')
    survivors = subprocess.run(['pgrep', '-f', str(work)], capture_output=True, text=True)
    assert survivors.returncode == 1, f'processes left running: {survivors.stdout}'


# ---- 5. a distributed run that did its work exits 0, every time (issue 20) ----------------------------------
@pytest.mark.heavy
def test_repeated_distributed_runs_all_exit_0(tmp_path):
    """tools/stress_dist.py with few runs (its defaults, 50 and 20, are the issue's proof): each 2-process training
    and test of test_compat's toy job exits 0 and leaves no process. The abort it guards against is a race (2 runs
    in 18 under `make test` on a loaded 2-core machine, none in 60 runs here), so few runs catch it only sometimes:
    test_compat's test_end_distributed_run_joins_the_backend_threads checks the fix's mechanism every time."""
    result = run_tool(sys.executable, 'tools/stress_dist.py', '--train-runs', '5', '--test-runs', '3',
                      '--work-dir', str(tmp_path), timeout=1500, check=False)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    assert 'training runs exited 0: 5/5; test runs exited 0: 3/3' in result.stdout

"""Reliability (issue 15): official training checkpoints holding non-tensor objects, crash and resume, torn
checkpoint files, a failing rank.

The training scenarios run the real tools (tools/train.py, tools/dist_train.sh, which add IterationSeedHook) on
a toy regression whose every iteration draws random numbers (dropout, and noise added to the samples as an
augmentation would), so a resumed run matches an uninterrupted one only if it draws the same numbers. The
training processes import this module (``custom_imports``) for the toy and two test hooks: one records every
iteration's loss per rank, one injects a fault chosen by the ``VTB_TEST_FAULT`` environment variable.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS
from torch import nn
from torch.utils.data import Dataset

import vt_backbones  # noqa: F401  (vt_backbones.compat: weights-only loading, crash-safe checkpoints)
from vt_backbones.compat import checkpoint_problem
from vt_backbones.convert import ConversionError, convert_file, convert_state_dict, read_checkpoint

from conftest import ROOT

TESTS = Path(__file__).resolve().parent


# ---- hooks the training processes load ----------------------------------------------------------
@MODELS.register_module(force=True)
class ReliabilityToyModel(BaseModel):
    """A regression with dropout: each training iteration draws from torch's generator."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))

    def forward(self, inputs: list, labels: list, mode: str = 'loss') -> dict:
        prediction = self.layers(torch.stack(inputs)).squeeze(1)
        return dict(loss=((prediction - torch.stack(labels)) ** 2).mean())


@DATASETS.register_module(force=True)
class ReliabilityToyDataset(Dataset):
    """Samples with numpy noise added on every read, as a random augmentation does."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict:
        x = np.array([i / 16, 1.0]) + np.random.normal(0, 0.1, 2)
        return dict(inputs=torch.tensor(x, dtype=torch.float32), labels=torch.tensor(float(i % 2)))


@HOOKS.register_module(force=True)
class ReliabilityLossRecorder(Hook):
    """Appends ``{"iter", "loss"}`` of every training iteration to ``<work_dir>/losses_rank<r>.jsonl``."""

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        with open(Path(runner.work_dir, f'losses_rank{runner.rank}.jsonl'), 'a') as f:
            f.write(json.dumps(dict(iter=runner.iter + 1, loss=float(outputs['loss']))) + '\n')


@HOOKS.register_module(force=True)
class ReliabilityFaultHook(Hook):
    """``VTB_TEST_FAULT=<sigkill|raise>:<rank>:<iteration>``: that rank dies at the start of that iteration
    (SIGKILL: no Python cleanup, as the OOM killer; raise: an exception, as a bad sample)."""

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        fault = os.environ.get('VTB_TEST_FAULT')
        if not fault:
            return
        mode, rank, iteration = fault.split(':')
        if runner.rank == int(rank) and runner.iter + 1 == int(iteration):
            Path(runner.work_dir, 'fault_time').write_text(repr(time.time()))
            if mode == 'sigkill':
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f'injected failure on rank {rank} at iteration {iteration}')


# ---- 1. official training checkpoints with non-tensor objects -----------------------------------
class CfgNode(dict):
    """yacs' CfgNode as the Swin codebase saves it (a dict subclass with attributes), from a module that is not
    installed when the file is read."""
    __module__ = 'yacs_not_installed.config'

    def __init__(self, entries: dict) -> None:
        super().__init__(entries)
        self.__dict__['_frozen'] = True


class RunsCommand:
    """What a malicious file holds: unpickling it would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f'touch {self.marker}',)


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


# ---- 2-4. training scenarios ---------------------------------------------------------------------------
def run_tool(*args: str, env: dict | None = None, timeout: int = 600,
             check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(TESTS), os.environ.get('PYTHONPATH')])),
           'PYTHON': sys.executable, **(env or {})}
    env.pop('OMP_NUM_THREADS', None)
    result = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result


def free_port() -> str:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def train(config: str, work: Path, *args: str, gpus: int = 1, fault: str = '', check: bool = True,
          timeout: int = 600) -> subprocess.CompletedProcess:
    env = {'VTB_TEST_FAULT': fault}
    if gpus == 1:
        return run_tool(sys.executable, 'tools/train.py', config, '--work-dir', str(work), *args, env=env,
                        check=check, timeout=timeout)
    return run_tool('bash', 'tools/dist_train.sh', config, str(gpus), '--work-dir', str(work), *args,
                    env={**env, 'PORT': free_port()}, check=check, timeout=timeout)


def losses(work: Path, rank: int = 0) -> dict[int, float]:
    """The loss of every iteration a rank ran, by iteration (a resumed run's entries replace the earlier ones)."""
    lines = (work / f'losses_rank{rank}.jsonl').read_text().splitlines()
    return {record['iter']: record['loss'] for record in map(json.loads, lines)}


TOY_CONFIG = """
custom_imports = dict(imports=['test_reliability'], allow_failed_imports=False)
model = dict(type='ReliabilityToyModel')
train_dataloader = dict(dataset=dict(type='ReliabilityToyDataset'), batch_size=4, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=0.01))
train_cfg = dict(by_epoch=False, max_iters=6)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False, max_keep_ckpts=3),
                     logger=dict(type='LoggerHook', interval=1))
custom_hooks = [dict(type='ReliabilityLossRecorder'), dict(type='ReliabilityFaultHook')]
randomness = dict(seed=0)
"""


@pytest.fixture(scope='module')
def toy_config(tmp_path_factory) -> str:
    config = tmp_path_factory.mktemp('toy') / 'toy.py'
    config.write_text(TOY_CONFIG)
    return str(config)


@pytest.fixture(scope='module')
def uninterrupted(toy_config, tmp_path_factory) -> Path:
    """The reference: 6 iterations in one go (checkpoints at 2, 4 and 6)."""
    work = tmp_path_factory.mktemp('uninterrupted')
    train(toy_config, work)
    return work


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_resume(toy_config, uninterrupted, tmp_path):
    work = tmp_path / 'work'
    killed = train(toy_config, work, fault='sigkill:0:6', check=False)  # dies in iteration 6, after iter_4.pth
    assert killed.returncode == -signal.SIGKILL
    assert sorted(losses(work)) == [1, 2, 3, 4, 5] and (work / 'last_checkpoint').read_text().endswith('iter_4.pth')

    resumed = train(toy_config, work, '--resume')
    assert 'resumed epoch: 0, iter: 4' in resumed.stdout + resumed.stderr
    assert losses(work) == losses(uninterrupted)  # iterations 5 and 6 repeat the uninterrupted run exactly


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_previous(toy_config, uninterrupted, tmp_path):
    work = tmp_path / 'work'
    shutil.copytree(uninterrupted, work)
    latest = work / 'iter_6.pth'
    (work / 'last_checkpoint').write_text(str(latest))
    data = latest.read_bytes()
    latest.write_bytes(data[:len(data) * 2 // 3])  # a write cut short
    (work / 'losses_rank0.jsonl').write_text('')

    resumed = train(toy_config, work, '--resume')
    log = resumed.stdout + resumed.stderr
    assert f'The latest checkpoint {latest}' in log and 'cannot be resumed' in log
    assert f'Resuming from the previous one, {work / "iter_4.pth"}' in log
    assert losses(work) == {i: v for i, v in losses(uninterrupted).items() if i > 4}


@pytest.mark.slow
def test_dist_sigkill_then_resume(toy_config, tmp_path):
    reference, work = tmp_path / 'reference', tmp_path / 'work'
    train(toy_config, reference, gpus=2)
    killed = train(toy_config, work, gpus=2, fault='sigkill:1:6', check=False)
    assert killed.returncode != 0 and (work / 'last_checkpoint').read_text().endswith('iter_4.pth')

    train(toy_config, work, '--resume', gpus=2)
    for rank in (0, 1):
        assert losses(work, rank) == losses(reference, rank)


@pytest.mark.slow
def test_failing_rank_stops_the_whole_job(toy_config, tmp_path):
    work = tmp_path / 'work'
    result = train(toy_config, work, gpus=2, fault='raise:1:3', check=False, timeout=180)
    stopped_after = time.time() - float((work / 'fault_time').read_text())
    assert result.returncode != 0
    summary = result.stderr[result.stderr.index('Root Cause (first observed failure)'):]
    assert 'rank      : 1' in summary  # torchrun's summary names the rank and shows its traceback (@record)
    assert 'RuntimeError: injected failure on rank 1 at iteration 3' in summary
    assert stopped_after < 60, f'the job took {stopped_after:.0f} s to stop after the failure'
    print(f'the job stopped {stopped_after:.1f} s after the failure')
    survivors = subprocess.run(['pgrep', '-f', str(work)], capture_output=True, text=True)
    assert survivors.returncode == 1, f'processes left running: {survivors.stdout}'

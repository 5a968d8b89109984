"""Reliability (issue 15): official training checkpoints holding non-tensor objects, a failing rank.

The training processes import this module (``custom_imports``) for a test hook that injects a fault chosen by
the ``VTB_TEST_FAULT`` environment variable.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
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
from mmengine.registry import HOOKS

import vt_backbones  # noqa: F401  (vt_backbones.compat: weights-only loading, crash-safe checkpoints)
from vt_backbones.compat import checkpoint_problem
from vt_backbones.convert import ConversionError, convert_file, convert_state_dict, read_checkpoint

from conftest import ROOT

TESTS = Path(__file__).resolve().parent


# ---- hooks the training processes load ----------------------------------------------------------
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


# ---- 4. a failing rank ---------------------------------------------------------------------------------
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


TOY_DIST_CONFIG = """
custom_imports = dict(imports=['test_compat', 'test_reliability'], allow_failed_imports=False)
model = dict(type='CompatToyModel')
train_dataloader = dict(dataset=dict(type='CompatToyDataset'), batch_size=2, num_workers=0,
                        sampler=dict(type='DefaultSampler', shuffle=True))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
train_cfg = dict(by_epoch=False, max_iters=6)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False))
custom_hooks = [dict(type='ReliabilityFaultHook')]
randomness = dict(seed=0)
"""


@pytest.mark.slow
def test_failing_rank_stops_the_whole_job(tmp_path):
    config = tmp_path / 'toy.py'
    config.write_text(TOY_DIST_CONFIG)
    started = time.monotonic()
    result = run_tool('bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(tmp_path / 'work'),
                      env={'VTB_TEST_FAULT': 'raise:1:3', 'PORT': free_port()}, check=False, timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert 'RuntimeError: injected failure on rank 1 at iteration 3' in result.stderr
    assert elapsed < 60, f'the job took {elapsed:.0f} s to stop'
    survivors = subprocess.run(['pgrep', '-f', str(tmp_path / 'work')], capture_output=True, text=True)
    assert survivors.returncode == 1, f'processes left running: {survivors.stdout}'

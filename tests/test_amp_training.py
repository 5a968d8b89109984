"""Training with AMP (issue 11, item 2): mmengine's AmpOptimWrapper on a machine without CUDA (bf16 autocast,
vt_backbones.engine.optim_wrappers), its loss scaler through a checkpoint and a resume, and ``tools/train.py --amp``
end to end on the mini data.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from mmengine.device import get_device
from mmengine.hooks import Hook
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from torch import nn

from vt_backbones.engine import optim_wrappers

from conftest import ROOT

cpu_only = pytest.mark.skipif(get_device() != 'cpu', reason="ours replaces mmengine's AmpOptimWrapper without CUDA")
DEMO_CONFIG = os.path.join(ROOT, 'configs', 'demo', 'maskrcnn_shuffle_t_mini.py')


def amp_wrapper(model: nn.Module, **kwargs: Any) -> AmpOptimWrapper:
    return build_optim_wrapper(model, dict(type='AmpOptimWrapper', optimizer=dict(type='SGD', lr=0.5), **kwargs))


@cpu_only
def test_cpu_amp_trains_in_bf16_without_loss_scaling() -> None:
    model = nn.Linear(4, 3)
    wrapper = amp_wrapper(model, dtype='bfloat16', loss_scale='dynamic')
    assert isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype == torch.bfloat16
    x = torch.randn(8, 4)

    def loss() -> torch.Tensor:
        with wrapper.optim_context(model):
            out = model(x)
        assert out.dtype == torch.bfloat16
        return out.float().square().mean()

    loss().backward()
    expected = {name: (p - 0.5 * p.grad).detach() for name, p in model.named_parameters()}  # plain SGD: unscaled
    model.zero_grad()
    wrapper.update_params(loss())
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), expected[name]), name
    assert 'loss_scaler' not in wrapper.state_dict()  # a disabled scaler has no state to save


@cpu_only
@pytest.mark.parametrize('native', [True, False])
def test_cpu_amp_of_a_gpu_recipe_uses_bf16_only_where_native(native: bool, monkeypatch) -> None:
    monkeypatch.setattr(optim_wrappers, 'cpu_has_native_bf16', lambda: native)
    model = nn.Linear(4, 3)
    wrapper = amp_wrapper(model, loss_scale=512.0)  # a recipe's fp16 setting: no dtype
    with wrapper.optim_context(model):
        out = model(torch.randn(2, 4))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)


@cpu_only
def test_cpu_amp_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="dtype on a CPU must be 'bfloat16', 'float16' or None, got 'float64'"):
        amp_wrapper(nn.Linear(2, 2), dtype='float64')


# What the official dense recipe of each family trained in (looked up in the official repositories): Swin's and
# CoaT's Mask R-CNN configs use apex O1 (dynamic loss scale), Twins' 3x "Swin setting" mmdet's fp16 with a static
# loss scale of 512; Focal, GG and Shuffle have no recipe of their own and use Swin's; Twins' 1x "PVT setting",
# CrossFormer and every UperNet recipe (Swin's segmentation code has no fp16) train in fp32.
AMP_DETECTION = {'swin': 'dynamic', 'coat': 'dynamic', 'focal': 'dynamic', 'gg': 'dynamic', 'shuffle': 'dynamic'}
RECIPE_CONFIGS = sorted(Path(ROOT, 'configs').glob('*.py'))


def recipe_loss_scale(stem: str) -> str | float | None:
    """The loss scale of the recipe's fp16 training, ``None`` for fp32 (Cascade Mask R-CNN: as Mask R-CNN)."""
    task, family = stem.removeprefix('cascade_').split('_')[:2]
    if task != 'maskrcnn':
        return None
    if family == 'twins':
        return 512.0 if stem.endswith('_3x') else None
    return AMP_DETECTION.get(family)


@pytest.mark.parametrize('path', RECIPE_CONFIGS, ids=lambda p: p.stem)
def test_configs_train_in_their_recipes_precision(path: Path) -> None:
    from mmengine.config import Config
    cfg = Config.fromfile(str(path))
    loss_scale = recipe_loss_scale(path.stem)
    header = path.read_text().split('\n_base_')[0]
    assert '# Precision: ' + ('fp32' if loss_scale is None else 'fp16') in header
    if loss_scale is None:
        assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    else:
        assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == loss_scale
        assert cfg.optim_wrapper.get('dtype') is None  # fp16 on GPUs, mmengine's default there


class RecordScaleHook(Hook):
    """The loss scale each iteration starts with."""

    def __init__(self) -> None:
        self.scales: dict[int, float] = {}

    def before_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None) -> None:
        self.scales[runner.iter + 1] = runner.optim_wrapper.loss_scaler.get_scale()


def scaled_runner(work_dir: Path, max_iters: int, **kwargs: Any) -> Runner:
    import test_compat  # noqa: F401  registers the toy model and dataset
    # growth_interval=1: the scale doubles after every finite step, so each iteration has its own scale.
    return Runner(
        model=dict(type='CompatToyModel'), work_dir=str(work_dir),
        train_dataloader=dict(dataset=dict(type='CompatToyDataset'), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(type=AmpOptimWrapper, optimizer=dict(type='SGD', lr=0.01),
                           loss_scale=dict(init_scale=8.0, growth_interval=1)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)),
        randomness=dict(seed=0), **kwargs)


def test_amp_loss_scaler_survives_checkpoint_and_resume(tmp_path, monkeypatch) -> None:
    """mmengine's own AmpOptimWrapper (the GPU path), with a CPU GradScaler standing in for the CUDA one."""
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp_optimizer_wrapper, 'GradScaler', functools.partial(torch.amp.GradScaler, 'cpu'))
    first = RecordScaleHook()
    scaled_runner(tmp_path, max_iters=2, custom_hooks=[first]).train()
    assert first.scales == {1: 8.0, 2: 16.0}
    saved = torch.load(tmp_path / 'iter_2.pth')['optimizer']['loss_scaler']  # weights-only, torch's default
    assert saved['scale'] == 32.0 and saved['growth_interval'] == 1

    resumed = RecordScaleHook()
    runner = scaled_runner(tmp_path, max_iters=3, custom_hooks=[resumed], resume=True)
    runner.train()
    assert resumed.scales == {3: 32.0}  # a fresh scaler would start again at 8
    assert runner.optim_wrapper.loss_scaler.get_scale() == 64.0


@HOOKS.register_module(force=True)
class PrecisionProbeHook(Hook):
    """Writes what the backbone's first forward in training saw to ``<work_dir>/precision.json``."""

    def before_train(self, runner: Runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        self.handle = model.backbone.register_forward_hook(self.record)
        self.path = Path(runner.work_dir, 'precision.json')

    def record(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        self.handle.remove()
        self.path.write_text(json.dumps(dict(
            autocast=torch.is_autocast_enabled('cpu'), autocast_dtype=str(torch.get_autocast_dtype('cpu')),
            output_dtypes=sorted({str(out.dtype) for out in outputs}))))


@pytest.mark.slow
@cpu_only
def test_train_amp_on_cpu_end_to_end(tmp_path) -> None:
    subprocess.run([sys.executable, 'tools/make_mini_data.py', '--out', str(tmp_path / 'data'), '--num-train', '2',
                    '--num-val', '1'], cwd=ROOT, check=True, capture_output=True)
    root = f'{tmp_path}/data/coco/'
    config = tmp_path / 'mini_amp.py'
    config.write_text(f'''
_base_ = {DEMO_CONFIG!r}
custom_imports = dict(imports=['vt_backbones', 'test_amp_training'], allow_failed_imports=False)
data_root = {root!r}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(64, 48), keep_ratio=True),
    dict(type='PackDetInputs'),
]
# Tiny images, few RoIs: bf16 is emulated (slow) on CPUs without native support; two iterations prove the path.
model = dict(train_cfg=dict(rpn=dict(sampler=dict(num=32)), rcnn=dict(sampler=dict(num=16))))
train_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=100), logger=dict(interval=1))
custom_hooks = [dict(type='PrecisionProbeHook')]
''')
    work = tmp_path / 'work'
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                      os.environ.get('PYTHONPATH')]))}
    result = subprocess.run([sys.executable, 'tools/train.py', str(config), '--work-dir', str(work), '--amp'],
                            cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert 'AmpOptimWrapper without CUDA: bf16 autocast, no loss scaling' in log
    probe = json.loads((work / 'precision.json').read_text())
    assert probe == dict(autocast=True, autocast_dtype='torch.bfloat16', output_dtypes=['torch.bfloat16'])
    scalars = next(work.glob('*/vis_data/scalars.json')).read_text().splitlines()
    train_losses = [json.loads(line)['loss'] for line in scalars if 'loss' in json.loads(line)]
    assert len(train_losses) == 2 and all(0 < loss < 100 for loss in train_losses)  # finite, sane

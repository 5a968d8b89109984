"""End to end with the real tools on the synthetic mini data: train, checkpoint, resume, test.

2-process DDP training is exercised by tests/test_demo.py, which runs `make demo`'s script.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from mmengine.device import get_device

import vt_backbones  # (also allowlists what mmengine checkpoints hold, for weights-only loading)

from conftest import ROOT, load_tool

pytestmark = pytest.mark.slow
DEMO_CONFIG = os.path.join(ROOT, 'configs', 'demo', 'maskrcnn_shuffle_t_mini.py')  # what `make demo` trains


def run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}'
    return result


@pytest.fixture(scope='module')
def mini_config(tmp_path_factory) -> str:
    """The demo config on a freshly generated mini COCO, shortened to a few iterations."""
    tmp = tmp_path_factory.mktemp('e2e')
    run(sys.executable, 'tools/make_mini_data.py', '--out', str(tmp / 'data'), '--num-train', '4', '--num-val', '2')
    root = f'{tmp}/data/coco/'
    config = tmp / 'mini.py'
    config.write_text(f'''
_base_ = {DEMO_CONFIG!r}
data_root = {root!r}
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
train_cfg = dict(max_iters=4, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3), logger=dict(interval=1))
''')
    return str(config)


def test_train_checkpoint_resume_and_test(mini_config, tmp_path):
    work = tmp_path / 'work'
    first = run(sys.executable, 'tools/train.py', mini_config, '--work-dir', str(work),
                '--cfg-options', 'train_cfg.max_iters=2')
    if get_device() == 'cpu':  # the log says how the allocator was set (vt_backbones.engine.host_memory)
        assert 'CPU run: glibc keeps freed memory' in first.stdout + first.stderr
    ckpt = torch.load(work / 'iter_2.pth', map_location='cpu')  # weights-only, PyTorch's default
    assert ckpt['meta']['iter'] == 2 and 'optimizer' in ckpt and 'message_hub' in ckpt

    resumed = run(sys.executable, 'tools/train.py', mini_config, '--work-dir', str(work), '--resume')
    assert 'resumed epoch: 0, iter: 2' in resumed.stdout + resumed.stderr
    final = torch.load(work / 'iter_4.pth', map_location='cpu')
    assert final['meta']['iter'] == 4
    stem = next(k for k in final['state_dict'] if k.startswith('backbone.') and k.endswith('weight'))
    assert not torch.equal(final['state_dict'][stem], ckpt['state_dict'][stem])  # training went on

    # After 4 iterations no box may pass the usual 0.05 score threshold; keep them all so COCO
    # evaluation has something to score.
    tested = run(sys.executable, 'tools/test.py', mini_config, str(work / 'iter_4.pth'),
                 '--work-dir', str(tmp_path / 'test'), '--cfg-options', 'model.test_cfg.rcnn.score_thr=0.0')
    log = tested.stdout + tested.stderr
    for metric in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert metric in log, log[-3000:]


def test_training_checkpoint_is_read_by_test_visualize_and_export(mini_config, tmp_path):
    """What tools/train.py writes, every other tool reads: tools/test.py and tools/visualize.py (mmengine's loader)
    and tools/export_onnx.py with a config (ours: the backbone of the whole detector). With CoaT, whose layout no
    foreign one shares (issue 25: its own checkpoints were refused)."""
    config = tmp_path / 'coat.py'
    config.write_text(f'''
_base_ = {mini_config!r}
model = dict(backbone=dict(_delete_=True, type='vt_backbones.CoaT', arch='lite_tiny', drop_path_rate=0.0,
                           init_cfg=None),
             neck=dict(in_channels={list(vt_backbones.create_backbone('coat_lite_tiny').out_channels)}))
''')
    work = tmp_path / 'work'
    run(sys.executable, 'tools/train.py', str(config), '--work-dir', str(work),
        '--cfg-options', 'train_cfg.max_iters=2')
    checkpoint = str(work / 'iter_2.pth')

    tested = run(sys.executable, 'tools/test.py', str(config), checkpoint, '--work-dir', str(tmp_path / 'test'),
                 '--cfg-options', 'model.test_cfg.rcnn.score_thr=0.0')
    assert 'coco/bbox_mAP' in tested.stdout + tested.stderr
    picture = tmp_path / 'predictions.png'
    run(sys.executable, 'tools/visualize.py', str(config), checkpoint, '--out', str(picture), '--num-images', '1')
    assert picture.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    backbone = load_tool('export_onnx').from_config(str(config), checkpoint)
    saved = torch.load(checkpoint, map_location='cpu')['state_dict']
    state = backbone.state_dict()
    assert state.keys() == {k[len('backbone.'):] for k in saved if k.startswith('backbone.')}
    assert all(torch.equal(state[k], saved['backbone.' + k]) for k in state)

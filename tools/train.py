"""Train an mmdet or mmseg model from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG GPUS [same options]
"""
from __future__ import annotations

import argparse
import logging

from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.runner import Runner
from torch.distributed.elastic.multiprocessing.errors import record

import vt_backbones  # noqa: F401  applies vt_backbones.compat before anything is built or loaded
# tools/ is on sys.path when a tool runs
from cli_common import add_common_args, end_distributed_run, keep_freed_memory_on_cpu, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model with mmengine')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the work dir if no CKPT is given')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision: fp16 with dynamic loss scaling on GPUs, bf16 on a CPU')
    add_common_args(parser)
    return parser.parse_args(argv)


def enable_amp(cfg: Config) -> None:
    """mmengine's AmpOptimWrapper: fp16 with dynamic loss scaling on GPUs, bf16 autocast on a CPU."""
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        print_log('AMP training is already enabled in the config.', logger='current', level=logging.WARNING)
    elif wrapper_type != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper (or AmpOptimWrapper), got {wrapper_type}')
    else:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if get_device() == 'cpu':  # asked explicitly: bf16 even where the CPU only emulates it (engine.optim_wrappers)
        cfg.optim_wrapper.dtype = 'bfloat16'


@record  # under torchrun: the failing rank's traceback goes into the launcher's error summary
def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    keep_freed_memory_on_cpu()

    if args.amp:
        enable_amp(cfg)
    # A resumed run draws the random numbers the uninterrupted run drew (vt_backbones.engine.hooks).
    hooks = cfg.get('custom_hooks', [])
    if not any(isinstance(hook, dict) and hook.get('type') == 'IterationSeedHook' for hook in hooks):
        cfg.custom_hooks = [*hooks, dict(type='IterationSeedHook')]

    if args.resume == 'auto':  # the latest checkpoint of the work dir
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = Runner.from_cfg(cfg)
    runner.train()
    del runner  # it holds the process group (its DDP model): see end_distributed_run
    end_distributed_run()  # not after an exception: that rank must exit at once


if __name__ == '__main__':
    main()

"""Evaluate a checkpoint of an mmdet or mmseg model with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out OUT] [--show-dir DIR] [--cfg-options k=v ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [same options]

``--out`` and ``--show-dir`` mean what they mean in mmdet's and mmseg's own ``tools/test.py``.
"""
from __future__ import annotations

import argparse

from mmengine.config import Config
from mmengine.evaluator import BaseMetric, DumpResults
from mmengine.runner import Runner
from torch.distributed.elastic.multiprocessing.errors import record

import vt_backbones  # noqa: F401  applies vt_backbones.compat before anything is built or loaded
# tools/ is on sys.path when a tool runs
from cli_common import add_common_args, end_distributed_run, keep_freed_memory_on_cpu, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint with mmengine')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='mmdet (and other) configs: dump the predictions to this .pkl file; '
                        'mmseg configs: write one PNG label map per image into this dir')
    parser.add_argument('--show-dir', help='draw predictions: mmdet saves each image to '
                        '<work_dir>/<timestamp>/DIR (or DIR if absolute), mmseg saves every '
                        'default_hooks.visualization.interval-th image under DIR/vis_data/vis_image')
    add_common_args(parser)
    return parser.parse_args(argv)


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Turn on the config's visualization hook and save what it draws to ``show_dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show-dir needs default_hooks.visualization, '
                           "e.g. dict(type='DetVisualizationHook') or dict(type='SegVisualizationHook')")
    hook['draw'] = True
    if cfg.get('default_scope') == 'mmdet':
        hook['test_out_dir'] = show_dir  # DetVisualizationHook writes each image itself
    else:
        cfg.visualizer['save_dir'] = show_dir  # SegVisualizationHook hands images to the visualizer's backends


def dump_metric(scope: str | None, out_file: str) -> BaseMetric:
    """The metric that pickles the predictions; mmdet's stores masks as RLE instead of full bitmaps."""
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out_file)
    return DumpResults(out_file_path=out_file)


@record  # under torchrun: the failing rank's traceback goes into the launcher's error summary
def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    keep_freed_memory_on_cpu()
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    scope = cfg.get('default_scope')
    if args.out is not None and scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out  # IoUMetric writes the label maps

    runner = Runner.from_cfg(cfg)
    if args.out is not None and scope != 'mmseg':
        runner.test_evaluator.metrics.append(dump_metric(scope, args.out))
    runner.test()
    del runner  # it holds the process group (its DDP model): see end_distributed_run
    end_distributed_run()  # not after an exception: that rank must exit at once


if __name__ == '__main__':
    main()

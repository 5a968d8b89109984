#!/usr/bin/env python
"""Prints how the losses moved during a run and its final metrics, from mmengine's scalars.json;
optionally draws the loss curves.

    python tools/summarize_log.py WORK_DIR [--plot losses.png]
"""
import argparse
import glob
import json
import os
import sys


def read_scalars(work_dir: str) -> list[dict]:
    files = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')), key=os.path.getmtime)
    if not files:
        sys.exit(f'error: no */vis_data/scalars.json under {work_dir}')
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(train: list[dict], keys: list[str], out_file: str, title: str) -> None:
    """One log-scale axis with every logged loss against the iteration, written atomically to ``out_file``."""
    import matplotlib
    matplotlib.use('Agg')  # files only: no display needed
    import matplotlib.pyplot as plt

    from vt_backbones.fileio import atomic_output  # here: the package's imports take seconds, only plots need it

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    iters = [r['iter'] for r in train]
    for key in keys:
        ax.plot(iters, [r[key] for r in train], marker='.', linewidth=2.5 if key == 'loss' else 1.2, label=key)
    ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss (log scale)')
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(loc='upper right', fontsize='small')
    fig.tight_layout()
    try:
        with atomic_output(out_file) as tmp:  # the format from the name, png without an extension
            fig.savefig(tmp, format=os.path.splitext(out_file)[1][1:] or 'png')
    finally:
        plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir')
    parser.add_argument('--plot', metavar='FILE', help='also draw the loss curves into this image (e.g. a .png)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    records = read_scalars(args.work_dir)
    train = [r for r in records if 'loss' in r]
    if not train:
        sys.exit(f'error: no training losses logged under {args.work_dir}')
    keys = [k for k in train[0] if k.startswith('loss')]
    quarter = max(1, len(train) // 4)
    print(f'{"loss":<16}{"first quarter":>15}{"last quarter":>15}')
    for key in keys:
        first = sum(r[key] for r in train[:quarter]) / quarter
        last = sum(r[key] for r in train[-quarter:]) / quarter
        print(f'{key:<16}{first:>15.4f}{last:>15.4f}  ({(last - first) / first:+.0%})')
    metrics = [r for r in records if any('mAP' in k or 'mIoU' in k for k in r)]
    if metrics:
        print('final metrics:', {k: v for k, v in metrics[-1].items() if 'mAP' in k or 'mIoU' in k or 'aAcc' in k})
    if args.plot:
        plot_losses(train, keys, args.plot, f'training losses: {os.path.basename(os.path.normpath(args.work_dir))}')
        print(f'loss curves: {args.plot}')


if __name__ == '__main__':
    main()

#!/usr/bin/env python
"""Prints how the losses moved during a run and its final metrics, from mmengine's scalars.json.

    python tools/summarize_log.py WORK_DIR
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir')
    args = parser.parse_args()
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


if __name__ == '__main__':
    main()

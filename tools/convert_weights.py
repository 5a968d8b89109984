#!/usr/bin/env python
"""Convert ImageNet checkpoints (official, timm, mmpretrain/mmdet/mmseg layouts) to vt_backbones' layout,
or whole trained detectors / segmentors of the official repositories (mmdet 2.x / mmseg 0.x) to our configs.

    python tools/convert_weights.py SRC DST [--model NAME]
    python tools/convert_weights.py SRC [SRC ...] --out-dir DIR [--model NAME]
    python tools/convert_weights.py --whole-model SRC DST [--config CONFIG]

Writes ``{'state_dict': ..., 'meta': {source, model, format, ...}}`` atomically, prints what was
dropped, renamed and resized, and exits non-zero naming the keys when anything is missing,
unexpected or mis-shaped. With ``--out-dir`` each source becomes ``DIR/<variant>_vtb.pth`` (the
variant detected, or ``--model``), with a progress bar over the files; a failing file is reported
and the others are still converted. A config may also name the official file directly:
``init_cfg=dict(type='Pretrained', checkpoint=SRC)`` runs the same conversion. Our own layout is a source
format too ("ours (nothing to convert)"): a file this tool wrote, a backbone's ``state_dict()`` (bare or under
``state_dict``) and a whole detector/segmentor checkpoint of tools/train.py (its ``backbone.*``) give the same
tensors again.

``--whole-model``: SRC is an official Mask R-CNN / Cascade Mask R-CNN (mmdet 2.x) or UperNet (mmseg 0.x)
checkpoint, a file or a URL; DST loads strictly into the model of CONFIG (default: ours of the same
task and variant, configs/maskrcnn_<variant>.py or configs/upernet_<variant>.py), e.g. for
``python tools/test.py CONFIG DST``. See vt_backbones/whole_model.py.
"""
import argparse
import os
import sys

from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import vt_backbones  # noqa: E402
from vt_backbones.convert import ConversionError, convert_file  # noqa: E402
from vt_backbones.weights import WeightsError  # noqa: E402
from vt_backbones.whole_model import convert_whole_file  # noqa: E402


def convert_into_dir(sources: list[str], out_dir: str, model: str | None) -> int:
    """Converts each source to ``out_dir/<variant>_vtb.pth``; returns the number of failures."""
    written: dict[str, str] = {}  # output path -> the source it came from
    failures = 0
    with tqdm(sources, desc='converting', unit='file', file=sys.stderr, dynamic_ncols=True) as bar:
        for src in bar:
            bar.set_postfix_str(os.path.basename(src))
            # The variant, hence the output name, is known only after conversion: write beside it, then rename.
            staging = os.path.join(out_dir, f'.converting_{os.path.basename(src)}')
            try:
                report = convert_file(src, staging, model)
            except ConversionError as err:
                tqdm.write(f'error: {src}: {err}', file=sys.stderr)
                failures += 1
                continue
            dst = os.path.join(out_dir, f'{report.model}_vtb.pth')
            if dst in written:
                os.unlink(staging)
                tqdm.write(f'error: {src}: {written[dst]} was already written to {dst} (both are {report.model} '
                           f'checkpoints); convert one of them with: convert_weights.py SRC DST', file=sys.stderr)
                failures += 1
                continue
            os.replace(staging, dst)
            written[dst] = src
            tqdm.write(f'{src}:\n{report.summary()}\nwrote {dst}')
    print(f'converted {len(written)} of {len(sources)} files into {out_dir}')
    return failures


def convert_whole_model(src: str, dst: str, config: str | None) -> int:
    try:
        report = convert_whole_file(src, dst, config, configs_dir=os.path.join(ROOT, 'configs'))
    except (ConversionError, WeightsError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(report.summary())
    print(f'wrote {dst}')
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('paths', nargs='+', metavar='PATH',
                        help='SRC DST, or with --out-dir one or more checkpoints to convert')
    parser.add_argument('--out-dir', metavar='DIR', help='convert every PATH into DIR/<variant>_vtb.pth')
    parser.add_argument('--model', choices=vt_backbones.list_models(), metavar='NAME',
                        help='target variant (default: detected from the checkpoint); one of %(choices)s')
    parser.add_argument('--whole-model', action='store_true',
                        help='SRC is a whole official detector / segmentor (mmdet 2.x / mmseg 0.x)')
    parser.add_argument('--config', help='with --whole-model: the config whose model DST is for')
    args = parser.parse_args(argv)
    if args.config is not None and not args.whole_model:
        parser.error('--config goes with --whole-model')
    if args.whole_model:
        if len(args.paths) != 2 or args.out_dir is not None or args.model is not None:
            parser.error('--whole-model takes SRC DST (no --out-dir, no --model: the config sets the model)')
    elif args.out_dir is None and len(args.paths) != 2:
        parser.error(f'expected SRC DST (2 paths) without --out-dir, got {len(args.paths)}: {args.paths}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.whole_model:
        return convert_whole_model(*args.paths, args.config)
    if args.out_dir is not None:
        return 1 if convert_into_dir(args.paths, args.out_dir, args.model) else 0
    src, dst = args.paths
    try:
        report = convert_file(src, dst, args.model)
    except ConversionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(report.summary())
    print(f'wrote {dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python
"""Convert ImageNet checkpoints (official, timm, mmpretrain/mmdet/mmseg layouts) to vt_backbones' layout.

    python tools/convert_weights.py SRC DST [--model NAME]
    python tools/convert_weights.py SRC [SRC ...] --out-dir DIR [--model NAME]

Writes ``{'state_dict': ..., 'meta': {source, model, format, ...}}`` atomically, prints what was
dropped, renamed and resized, and exits non-zero naming the keys when anything is missing,
unexpected or mis-shaped. With ``--out-dir`` each source becomes ``DIR/<variant>_vtb.pth`` (the
variant detected, or ``--model``), with a progress bar over the files; a failing file is reported
and the others are still converted. A config may also name the official file directly:
``init_cfg=dict(type='Pretrained', checkpoint=SRC)`` runs the same conversion. Our own layout is a source
format too ("ours (nothing to convert)"): a file this tool wrote, a backbone's ``state_dict()`` (bare or under
``state_dict``) and a whole detector/segmentor checkpoint of tools/train.py (its ``backbone.*``) give the same
tensors again.
"""
import argparse
import os
import sys

from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vt_backbones  # noqa: E402
from vt_backbones.convert import ConversionError, convert_file  # noqa: E402


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('paths', nargs='+', metavar='PATH',
                        help='SRC DST, or with --out-dir one or more checkpoints to convert')
    parser.add_argument('--out-dir', metavar='DIR', help='convert every PATH into DIR/<variant>_vtb.pth')
    parser.add_argument('--model', choices=vt_backbones.list_models(), metavar='NAME',
                        help='target variant (default: detected from the checkpoint); one of %(choices)s')
    args = parser.parse_args(argv)
    if args.out_dir is not None:
        return 1 if convert_into_dir(args.paths, args.out_dir, args.model) else 0
    if len(args.paths) != 2:
        parser.error(f'expected SRC DST (2 paths) without --out-dir, got {len(args.paths)}: {args.paths}')
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

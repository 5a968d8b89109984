#!/usr/bin/env python
"""Convert an ImageNet checkpoint (official, timm, mmpretrain/mmdet/mmseg layouts) to vt_backbones' layout.

    python tools/convert_weights.py SRC DST [--model NAME]

Writes ``{'state_dict': ..., 'meta': {source, model, format, ...}}`` atomically, prints what was
dropped, renamed and resized, and exits non-zero naming the keys when anything is missing,
unexpected or mis-shaped. A config may also name the official file directly:
``init_cfg=dict(type='Pretrained', checkpoint=SRC)`` runs the same conversion.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vt_backbones  # noqa: E402
from vt_backbones.convert import ConversionError, convert_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--model', choices=vt_backbones.list_models(), metavar='NAME',
                        help='target variant (default: detected from the checkpoint); one of %(choices)s')
    args = parser.parse_args(argv)
    try:
        report = convert_file(args.src, args.dst, args.model)
    except ConversionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(report.summary())
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

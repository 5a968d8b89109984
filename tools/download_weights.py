#!/usr/bin/env python
"""Download, verify and convert the pretrained weights of the configs (the catalogue in vt_backbones/weights.py).

    python tools/download_weights.py swin_t coat_lite_mini [--out checkpoints]
    python tools/download_weights.py --all [--out checkpoints]
    python tools/download_weights.py --list

For each variant the sources are tried in order of preference (official URL, then timm's hub repository):
the file is downloaded into the cache the configs use too (``$TORCH_HOME/hub/checkpoints``, or the
huggingface_hub cache), checked against the published hash where there is one (a mismatch is an error and
leaves no file), converted and written atomically to ``OUT/<variant>_vtb.pth``. A valid converted file
already there is kept. Variants without a direct download are listed at the end with the page, the file
and where to put it. Exit status 1 when a download, hash check or conversion failed.

Offline clusters: run this where there is internet, copy OUT, and point a config at the file with
``--cfg-options model.backbone.init_cfg.checkpoint=checkpoints/swin_t_vtb.pth``.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vt_backbones  # noqa: E402
from vt_backbones.convert import ConversionError, convert_file  # noqa: E402
from vt_backbones.weights import CATALOGUE, WeightsError, fetch, how_to_get, rows  # noqa: E402


def is_converted(path: str, variant: str) -> bool:
    """Whether ``path`` is a complete converted checkpoint of ``variant`` (every key, every shape)."""
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        state_dict, meta = checkpoint['state_dict'], checkpoint['meta']
    except Exception:  # unreadable, truncated or not ours: converted again
        return False
    if meta.get('model') != variant:
        return False
    with torch.device('meta'):
        target = vt_backbones.create_backbone(variant, **meta.get('model_kwargs', {})).state_dict()
    expected = {k: v.shape for k, v in target.items() if k not in set(meta.get('new_keys', []))}
    return {k: v.shape for k, v in state_dict.items()} == expected


def get(variant: str, out_dir: str) -> tuple[str, str]:
    """Puts ``variant``'s weights at ``out_dir/<variant>_vtb.pth``: ('ok'|'kept'|'failed'|'manual', message)."""
    weights = CATALOGUE[variant]
    dst = os.path.join(out_dir, f'{variant}_vtb.pth')
    if os.path.isfile(dst) and is_converted(dst, variant):
        return 'kept', f'{dst} is already there and complete'
    errors = []
    for source in (s for s in weights.sources if s.direct):
        try:
            report = convert_file(fetch(source.location), dst, variant)
        except (WeightsError, ConversionError) as err:
            errors.append(f'{source.location}: {err}')
            continue
        failed_first = ''.join(f'\n  (failed first: {error})' for error in errors)
        return 'ok', f'{source.location}{failed_first}\n{report.summary()}\nwrote {dst}'
    if errors:
        return 'failed', '\n  '.join(errors)
    return 'manual', how_to_get(weights, out_dir)


def print_catalogue() -> None:
    table = [('variant', 'pretrain', 'kind', 'layout', 'hash', 'source (in order of preference)'), *rows()]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)) + '  ' + row[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('variants', nargs='*', metavar='VARIANT', help=f'one of {sorted(CATALOGUE)}')
    parser.add_argument('--all', action='store_true', help='every variant of the catalogue')
    parser.add_argument('--out', default='checkpoints', metavar='DIR', help='where converted files go '
                        '(default: %(default)s)')
    parser.add_argument('--list', action='store_true', help='print the catalogue and exit')
    args = parser.parse_args(argv)
    if args.list:
        return args
    unknown = [v for v in args.variants if v not in CATALOGUE]
    if unknown:
        parser.error(f'unknown VARIANT {unknown}; expected names from: {sorted(CATALOGUE)}')
    if bool(args.variants) == args.all:
        parser.error('give VARIANT names or --all (not both)')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        print_catalogue()
        return 0
    outcomes: dict[str, list[tuple[str, str]]] = {}
    for variant in list(CATALOGUE) if args.all else args.variants:
        status, message = get(variant, args.out)
        outcomes.setdefault(status, []).append((variant, message))
        if status in ('ok', 'kept'):
            print(f'{variant}: {message}')
    for status, title in (('failed', 'could not fetch (download, hash or conversion failed)'),
                          ('manual', 'not fetched: no direct download; to put them in place')):
        if status in outcomes:
            print(f'\n{title}:', file=sys.stderr)
            for variant, message in outcomes[status]:
                print(f'{variant}:\n  {message}', file=sys.stderr)
    done = len(outcomes.get('ok', [])) + len(outcomes.get('kept', []))
    print(f'\n{done} in place under {args.out}, {len(outcomes.get("failed", []))} failed, '
          f'{len(outcomes.get("manual", []))} need a manual download')
    return 1 if 'failed' in outcomes else 0


if __name__ == '__main__':
    sys.exit(main())

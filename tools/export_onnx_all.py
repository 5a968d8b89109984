#!/usr/bin/env python
"""Export every variant to ONNX and check onnxruntime against torch at four sizes from the single file: the table
of the README's "Export to ONNX" section.

    python tools/export_onnx_all.py [VARIANT ...] [--full-depth VARIANT ...] [--sizes HxW ...]
        [--speed-size 512x512] [--out-dir DIR] [--markdown OUT.md] [--json OUT.json]

Each variant is exported with its own widths, heads and windows; those named by ``--full-depth`` with their full
depth, the others with `vt_backbones.export.reduced_depth` (one block per stage, two where blocks alternate: the
table says which). Per variant: export time (torch.export, the ONNX translation and optimisation, not the checks),
file size and the max abs difference of onnxruntime against torch eager (fp32, batch 1, the largest over the four
outputs) at every ``--sizes``. Per family (its first variant in the run): onnxruntime time / torch eager time at
``--speed-size``, one thread each, in this process, interleaved, CPU time, median of the per-repeat ratios.
The tables are rewritten after every variant, so a run that is stopped keeps what it measured. Slow: minutes per
variant on 2 cores; run it niced in the background. Needs ``pip install -e .[deploy]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import vt_backbones  # noqa: E402
from export_onnx import size  # noqa: E402  (tools/ is on sys.path when a tool runs)
from vt_backbones.export import OnnxBackbone, export_onnx, reduced_depth  # noqa: E402
from vt_backbones.fileio import write_text_atomically  # noqa: E402

SIZES = ((224, 224), (256, 320), (97, 131), (800, 1344))


def depth_label(model: torch.nn.Module) -> str:
    arch = model.arch
    depths = arch.get('depths', arch.get('serial_depths'))
    text = '-'.join(str(d) for d in depths)
    return text + (f' + {arch["parallel_depth"]} parallel' if arch.get('parallel_depth') else '')


def speed_ratio(model: torch.nn.Module, backbone: OnnxBackbone, hw: tuple[int, int], repeat: int = 5) -> float:
    """Median over ``repeat`` of (onnxruntime CPU time / torch eager CPU time), the two run back to back in
    alternating order, one thread each, after one untimed run of each."""
    x = torch.randn(1, 3, *hw)
    runs = {'torch': lambda: model(x), 'onnxruntime': lambda: backbone(x)}
    ratios = []
    with torch.no_grad():
        for run in runs.values():
            run()
        for i in range(repeat):
            took = {}
            for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
                start = time.process_time()
                runs[name]()
                took[name] = time.process_time() - start
            ratios.append(took['onnxruntime'] / took['torch'])
    return statistics.median(ratios)


def markdown(rows: list[dict], sizes: list[tuple[int, int]], speed_size: tuple[int, int]) -> str:
    head = (['variant', 'depth exported', 'export s', 'MiB'] + [f'max abs diff {h}×{w}' for h, w in sizes]
            + [f'ORT / torch {speed_size[0]}×{speed_size[1]}'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        if 'error' in row:
            lines.append(f'| {row["variant"]} | {row["depth"]} | failed: {row["error"]} |')
            continue
        cells = [row['variant'], row['depth'] + ('' if row['full_depth'] else ' (reduced)'),
                 f'{row["export_seconds"]:.0f}', f'{row["mib"]:.1f}']
        cells += [f'{row["max_abs_diff"].get(f"{h}x{w}", float("nan")):.1e}' for h, w in sizes]
        cells.append(f'{row["ort_over_torch"]:.2f}' if row.get('ort_over_torch') else '')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('variants', nargs='*', help='default: every variant')
    parser.add_argument('--full-depth', nargs='*', default=[], metavar='VARIANT',
                        help='variants exported with their full depth (the others: reduced_depth)')
    parser.add_argument('--sizes', type=size, nargs='+', default=list(SIZES), metavar='HxW')
    parser.add_argument('--speed-size', type=size, default=(512, 512), metavar='HxW')
    parser.add_argument('--out-dir', help='keep the .onnx files here (default: a temporary directory)')
    parser.add_argument('--markdown', help='write the table here after every variant')
    parser.add_argument('--json', help='write the rows here after every variant')
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants + args.full_depth) - set(vt_backbones.list_models()))
    if unknown:
        parser.error(f'unknown variants {unknown}; valid: {vt_backbones.list_models()}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    variants = args.variants or vt_backbones.list_models()
    torch.set_num_threads(1)
    if args.out_dir:
        return export_all(variants, args, args.out_dir)
    with tempfile.TemporaryDirectory(prefix='vtb_onnx_') as out_dir:
        return export_all(variants, args, out_dir)


def export_all(variants: list[str], args: argparse.Namespace, out_dir: str) -> int:
    """Exports the variants one by one into ``out_dir`` (kept there only with ``--out-dir``), rewriting the tables
    after each; a variant that fails is a row saying so, and the run goes on."""
    rows, timed_families = [], set()
    for variant in variants:
        full = variant in args.full_depth
        model = (vt_backbones.create_backbone(variant, drop_path_rate=0.0).eval() if full
                 else reduced_depth(variant))
        path = os.path.join(out_dir, f'{variant}.onnx')
        print(f'{variant} ({depth_label(model)}{"" if full else ", reduced"})', flush=True)
        try:
            report = export_onnx(model, path, check_sizes=args.sizes, log=lambda m: print(f'  {m}', flush=True))
        except Exception as err:  # noqa: BLE001  (the table records a failure and the run goes on)
            print(f'  FAILED: {type(err).__name__}: {err}', flush=True)
            row = dict(variant=variant, depth=depth_label(model), full_depth=full, error=f'{err}'[:200])
        else:
            row = dict(variant=variant, depth=depth_label(model), full_depth=full,
                       export_seconds=report.export_seconds,
                       mib=report.file_bytes / 2 ** 20,
                       max_abs_diff={f'{c.size[0]}x{c.size[1]}': max(c.max_abs_diff) for c in report.checks},
                       max_abs_output={f'{c.size[0]}x{c.size[1]}': max(c.max_abs_ref) for c in report.checks})
            family = type(model).__name__
            if family not in timed_families:
                timed_families.add(family)
                row['ort_over_torch'] = speed_ratio(model, OnnxBackbone(path, threads=1), args.speed_size)
            if not args.out_dir:
                os.unlink(path)  # one file at a time in the temporary directory
        rows.append(row)
        print(f'  {row}', flush=True)
        if args.markdown:
            write_text_atomically(args.markdown, markdown(rows, args.sizes, args.speed_size))
        if args.json:
            write_text_atomically(args.json, json.dumps(rows, indent=1))
    print(markdown(rows, args.sizes, args.speed_size))
    return 0


if __name__ == '__main__':
    sys.exit(main())

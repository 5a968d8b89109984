#!/usr/bin/env python
"""Export a backbone to ONNX: one file for any batch size and any input size >= 32, checked with onnxruntime.

    python tools/export_onnx.py swin_t swin_t.onnx [--checkpoint swin_tiny_patch4_window7_224.pth]
    python tools/export_onnx.py configs/maskrcnn_focal_t.py focal_t.onnx [--checkpoint CKPT]

MODEL is a variant name (``python -c "import vt_backbones; print(vt_backbones.list_models())"``) or an
mmdet/mmseg config whose ``model.backbone`` is one of ours. A checkpoint (official, timm, OpenMMLab, or ours:
converted, a backbone's state_dict, a tools/train.py checkpoint) is read as ``tools/convert_weights.py`` does;
a config's own ``init_cfg=Pretrained`` file is loaded when it exists. The file has input ``image`` ``[batch, C, height, width]`` and outputs
``out0``..``out3``; it is checked against the model at ``--check-sizes`` (the max difference per output is
printed) and written atomically, only if every check passes. Needs ``pip install -e .[deploy]``.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import vt_backbones  # noqa: E402
from vt_backbones.convert import convert_state_dict, read_checkpoint, unwrap  # noqa: E402
from vt_backbones.export import CHECK_SIZES, OPSET, export_onnx  # noqa: E402


def size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'a size is HEIGHTxWIDTH, e.g. 256x320, got {text!r}') from None
    return height, width


def from_variant(name: str, checkpoint: str | None) -> torch.nn.Module:
    if checkpoint is None:
        return vt_backbones.create_backbone(name)
    state_dict, report = convert_state_dict(unwrap(read_checkpoint(checkpoint))[0], model_name=name)
    print(report.summary())
    model = vt_backbones.create_backbone(name, **report.model_kwargs)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert sorted(missing) == sorted(report.new) and not unexpected, (missing, unexpected)
    return model


def from_config(path: str, checkpoint: str | None) -> torch.nn.Module:
    from mmengine.config import Config
    cfg = Config.fromfile(path).model.backbone
    init_cfg = cfg.get('init_cfg') or {}
    if checkpoint is not None:
        cfg.init_cfg = dict(type='Pretrained', checkpoint=checkpoint)
    elif init_cfg.get('type') == 'Pretrained' and not os.path.exists(init_cfg['checkpoint']):
        print(f'note: the config\'s checkpoint {init_cfg["checkpoint"]} does not exist: exporting the initial '
              'weights (give --checkpoint)')
        cfg.init_cfg = None
    model = vt_backbones.MODELS.build(cfg)
    model.init_weights()
    return model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='a variant name (swin_t, ...) or a config file')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='weights to load (any layout tools/convert_weights.py reads)')
    parser.add_argument('--opset', type=int, default=OPSET, help=f'ONNX opset, >= 18 (default {OPSET})')
    parser.add_argument('--check-sizes', type=size, nargs='+', default=list(CHECK_SIZES), metavar='HxW',
                        help='input sizes onnxruntime must match torch at (default: %(default)s)')
    args = parser.parse_args(argv)
    if not args.model.endswith('.py') and args.model not in vt_backbones.list_models():
        parser.error(f'model must be a config file (.py) or one of {vt_backbones.list_models()}, got {args.model!r}')
    if any(min(s) < 32 for s in args.check_sizes):
        parser.error(f'check sizes must be at least 32x32 (the backbones\' minimum input), got {args.check_sizes}')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    steps = 3 + len(args.check_sizes)
    step = 0

    def progress(message: str) -> None:
        nonlocal step
        step += 1
        print(f'[{step}/{steps}] {time.perf_counter() - start:6.1f} s  {message}', flush=True)

    progress(f'building {args.model}' + (f' with {args.checkpoint}' if args.checkpoint else ''))
    model = (from_config if args.model.endswith('.py') else from_variant)(args.model, args.checkpoint)
    try:
        report = export_onnx(model, args.out, opset=args.opset, check_sizes=args.check_sizes, log=progress)
    except RuntimeError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""ONNX export of a backbone: one file for every batch size and every input size >= 32, checked with onnxruntime.

The model is traced by ``torch.export`` with symbolic batch, height and width (the window indices and masks are
built from the input's shape inside the graph, see `vt_backbones.layers.cached_per_shape`), then written by
torch's dynamo-based ONNX exporter (opset >= 18; the TorchScript exporter is deprecated and bakes the indices
of one size into the file). `export_onnx` runs the file with onnxruntime at a few sizes against the model
itself and refuses a file whose outputs differ. Requires the ``deploy`` extra (``pip install -e .[deploy]``).

The ONNX graph cannot reject an input: `OnnxBackbone` runs a file with the same input checks as the model
(``[B, in_channels, H, W]``, ``H, W >= 32``); a runtime used directly must apply them itself (the file's
metadata says ``min_input_size``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import family_of
from .base import MIN_SIZE
from .fileio import atomic_output

OPSET = 18
#: The traced example: every derived size (stage-4 windows, shuffled-window strides) is >= 2 at this input,
#: so that torch.export does not specialise one of them to 1.
EXAMPLE_SIZE = (2, 288, 320)
CHECK_SIZES = ((224, 224), (256, 320), (97, 131))
#: onnxruntime must equal torch within ``ATOL + RTOL * max|torch output|`` on every output.
ATOL, RTOL = 1e-4, 1e-5


@dataclass
class SizeCheck:
    """One onnxruntime run against torch: ``max_abs_diff[i]`` and ``max_abs_ref[i]`` of output ``i``."""
    size: tuple[int, int]
    max_abs_diff: list[float]
    max_abs_ref: list[float]

    @property
    def passed(self) -> bool:
        return all(d <= ATOL + RTOL * r for d, r in zip(self.max_abs_diff, self.max_abs_ref))

    def __str__(self) -> str:
        diffs = ', '.join(f'{d:.1e}' for d in self.max_abs_diff)
        return f'{self.size[0]}x{self.size[1]}: max |onnxruntime - torch| per output {diffs}'


@dataclass
class ExportReport:
    path: str
    opset: int
    export_seconds: float
    file_bytes: int
    checks: list[SizeCheck] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f'{self.path}: {self.file_bytes / 2 ** 20:.1f} MiB, opset {self.opset}, '
                 f'exported in {self.export_seconds:.1f} s; dynamic batch, height, width (>= {MIN_SIZE})']
        lines += [f'  {check}' for check in self.checks]
        return '\n'.join(lines)


def reduced_depth(variant: str, **kwargs) -> nn.Module:
    """``variant`` with its own widths, heads and windows but the fewest blocks per stage that hold every kind of
    block it has (`VisionBackbone.reduced_arch`): depth adds export time, not coverage. ``kwargs`` go to the
    family's constructor (eval mode, no drop path)."""
    cls = family_of(variant)
    return cls(arch=cls.reduced_arch(cls.variants[variant]), **{'drop_path_rate': 0.0, **kwargs}).eval()


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f'ONNX export needs {module}: pip install -e .[deploy] '
                          '(onnx, onnxscript, onnxruntime)') from e


def export_onnx(model: nn.Module, path: str, opset: int = OPSET,
                check_sizes: Sequence[tuple[int, int]] = CHECK_SIZES,
                log: Callable[[str], None] = print) -> ExportReport:
    """Exports ``model`` (a backbone, ``[B, C, H, W]`` -> its output maps) to ``path``, checks it, writes it.

    The file takes input ``image`` ``[batch, C, height, width]`` and returns ``out0``, ``out1``, ... (the
    model's outputs). It is written to a temporary name beside ``path``, checked with onnxruntime at
    ``check_sizes`` (batch 1, random input) and only then renamed to ``path``: a file that fails a check is
    deleted and a ``RuntimeError`` names the size and the differences. ``log`` receives the progress.
    """
    for module in ('onnx', 'onnxscript', 'onnxruntime'):
        _require(module)
    if opset < 18:
        raise ValueError(f'opset must be >= 18 (the dynamo exporter\'s minimum), got {opset}')
    model = model.eval()
    channels = getattr(model, 'in_channels', 3)
    batch, height, width = EXAMPLE_SIZE
    example = torch.randn(batch, channels, height, width)
    with torch.no_grad():
        num_outputs = len(model(example))
    dynamic = torch.export.Dim.DYNAMIC
    with atomic_output(path) as tmp:
        start = time.perf_counter()
        log(f'tracing {type(model).__name__} with symbolic batch, height and width (torch.export)')
        with torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
                                          strict=False)
        log(f'writing ONNX opset {opset}')
        torch.onnx.export(program, f=tmp, opset_version=opset, input_names=['image'],
                          output_names=[f'out{i}' for i in range(num_outputs)], external_data=False)
        _finish_file(tmp, channels)
        seconds = time.perf_counter() - start
        report = ExportReport(path, opset, seconds, os.path.getsize(tmp))
        session = OnnxBackbone(tmp)
        for size in check_sizes:
            report.checks.append(check_against_torch(model, session, size))
            log(f'checked {report.checks[-1]}')
            if not report.checks[-1].passed:
                raise RuntimeError(f'onnxruntime differs from torch beyond {ATOL} + {RTOL} * max|output| at '
                                   f'{report.checks[-1]}; {path} not written')
    return report


def _finish_file(path: str, channels: int) -> None:
    """Names the input's dynamic axes and records the input contract in the metadata."""
    import onnx
    proto = onnx.load(path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or any(d.HasField('dim_value') for i, d in enumerate(dims) if i != 1):
        raise RuntimeError(f'the exported input is not dynamic in batch, height and width: {dims}')
    for dim, name in zip(dims, ('batch', None, 'height', 'width')):
        if name:
            dim.dim_param = name
    for key, value in dict(min_input_size=str(MIN_SIZE), in_channels=str(channels),
                           producer='vt_backbones.export').items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


class OnnxBackbone:
    """An exported backbone run by onnxruntime with the model's input checks: ``backbone(x)`` takes a
    ``[B, C, H, W]`` float32 array or tensor (``H, W >= 32``) and returns the output maps as numpy arrays."""

    def __init__(self, path: str, threads: int | None = None) -> None:
        ort = _require('onnxruntime')
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.min_size = int(meta.get('min_input_size', MIN_SIZE))
        self.in_channels = int(meta['in_channels']) if 'in_channels' in meta else None

    def __call__(self, x: np.ndarray | Tensor) -> list[np.ndarray]:
        x = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        if x.ndim != 4 or (self.in_channels is not None and x.shape[1] != self.in_channels):
            raise ValueError(f'x must have shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}')
        if x.shape[2] < self.min_size or x.shape[3] < self.min_size:
            raise ValueError(f'x must be at least {self.min_size}x{self.min_size} (H, W), got {tuple(x.shape[2:])}')
        return self.session.run(None, {'image': x.astype(np.float32, copy=False)})


def check_against_torch(model: nn.Module, backbone: OnnxBackbone, size: tuple[int, int],
                        batch: int = 1) -> SizeCheck:
    """Runs ``model`` and the file on one random input of ``size``; the largest differences per output."""
    x = torch.randn(batch, backbone.in_channels or 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = [out.numpy() for out in model.eval()(x)]
    got = backbone(x)
    if [e.shape for e in expected] != [g.shape for g in got]:
        raise RuntimeError(f'onnxruntime output shapes {[g.shape for g in got]} differ from torch\'s '
                           f'{[e.shape for e in expected]} at {size}')
    return SizeCheck(tuple(size), [float(np.abs(e - g).max()) for e, g in zip(expected, got)],
                     [float(np.abs(e).max()) for e in expected])

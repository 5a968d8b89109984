"""One function in every dtype (issue 20, item 4): every variant computes in float64 the outputs it computes in
float32, and so does the smallest variant of every family under ``model.half()`` and ``model.bfloat16()``, at input
sizes whose windows are padded and masked.

float64 is what gradient checks and comparisons against reference code run in: its outputs must be the float32 ones
up to float32's rounding. The half-precision models must stay within the bounds of the autocast tests; like the fp16
autocast test, they run on one variant per family (the others build their masks and tables with the same code, and
emulated bf16 is slow here). Each variant with its own widths, heads and windows but `reduced_depth` (one block of
each kind per stage): the masks and tables are built per stage, so depth adds time, not coverage.
"""
from __future__ import annotations

import copy

import pytest
import torch

import vt_backbones
from vt_backbones.export import reduced_depth

from conftest import SMALLEST
from test_fastpath import OUTPUT_BOUND, relative_error

# Both pad the windows of every stage that has several (97x131: the ONNX check size, stage maps 25x33 to 4x5; 64x96:
# the autocast tests' size, 16x24 to 2x3) and leave CrossFormer's LDA groups of stages 1-2 padded.
SIZES = [(97, 131), (64, 96)]
# Relative L2 error of every output map against float32 (measured on all 29 variants at both sizes: float64 at most
# 1.5e-6, float16 1.5e-3, bfloat16 0.012). Before the masks followed the dtype, float64 was 0.07-0.16 off for GG and
# Twins-SVT, and CrossFormer (every dtype) and Focal (half precision) did not run.
BOUNDS = {torch.float64: 1e-4, **OUTPUT_BOUND}


@pytest.mark.parametrize('name', vt_backbones.list_models())
def test_every_dtype_computes_the_float32_outputs(name):
    model = reduced_depth(name)
    dtypes = list(BOUNDS) if name in SMALLEST else [torch.float64]
    converted = {dtype: copy.deepcopy(model).to(dtype) for dtype in dtypes}
    for size in SIZES:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            reference = model(x)
            for dtype, dtype_model in converted.items():
                outs = dtype_model(x.to(dtype))
                for i, (out, ref) in enumerate(zip(outs, reference, strict=True)):
                    assert out.dtype == dtype, f'{name} in {dtype}: output {i} came out in {out.dtype}'
                    error = relative_error(out, ref)
                    assert error <= BOUNDS[dtype], f'{name} in {dtype} at {size}: output {i} relative error {error:.1e}'

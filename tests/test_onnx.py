"""ONNX export (vt_backbones.export): one file per model serves every batch and input size, and onnxruntime
equals torch there, for every family.

Each family's smallest variant with its own widths, heads and windows but `reduced_depth` (one block of each kind
per stage): the export traces the blocks of a kind alike, so depth adds minutes, not coverage. It is exported by
tools/export_onnx.py from a config and a checkpoint of trained-like weights, not the initial ones. One export per
family, checked at two sizes: 97x131 (every stage padded; CrossFormer's regular groups in stages 1-2 and its
small-map rule in stages 3-4) and 32x45 with batch 2 (stage maps below one window, the small-map rule from stage 2).
Every other variant is exported and checked at the same two sizes too, with `make test-heavy` (minutes each).
"""
from __future__ import annotations

import json
import os

import pytest
import torch

from vt_backbones import families, family_of, list_models
from vt_backbones.export import ATOL, RTOL, OnnxBackbone, check_against_torch, export_onnx, reduced_depth

from conftest import ROOT, load_tool

pytest.importorskip('onnxruntime')
pytest.importorskip('onnxscript')
export_tool = load_tool('export_onnx')

# The smallest variant of each family; CoaT-Tiny has serial and parallel blocks (CoaT-Lite: serial only), Twins-SVT
# local windows and PCPVT's sub-sampled global attention with its position encoding.
# CrossFormer's export traces stages 2-4 twice (torch.cond): 6 minutes, so it runs with `make test-heavy`.
FAMILIES = ['swin_t', 'twins_svt_s', 'shuffle_t', 'coat_tiny', pytest.param('crossformer_t', marks=pytest.mark.heavy),
            'gg_t', 'focal_t']
FAMILY_VARIANTS = [getattr(variant, 'values', [variant])[0] for variant in FAMILIES]
# Twins-PCPVT's pieces (sub-sampled global attention, the position conv) are all in Twins-SVT.
COVERED_BY = {'PCPVT': 'twins_svt_s'}


def test_every_family_is_exported_by_a_test():
    """A new family fails here until it is in FAMILIES (or, with a reason, in COVERED_BY)."""
    tested = {family_of(variant).__name__ for variant in FAMILY_VARIANTS}
    assert tested | set(COVERED_BY) == {cls.__name__ for cls in families()}


def trained_like_(model: torch.nn.Module) -> torch.nn.Module:
    """Moves every parameter away from its initial value, as training does (an export of initial weights would not
    show that a checkpoint was loaded). Relative noise keeps each layer's scale: an absolute 0.05 on weights
    initialised at std 0.02 made Shuffle-T's stage 4 reach 342, where float32 rounding alone (against float64)
    differs by 0.05, beyond the export check's tolerance."""
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(1 + 0.1 * torch.randn_like(param)).add_(torch.randn_like(param), alpha=0.01)
    return model


@pytest.mark.slow
@pytest.mark.parametrize('variant', FAMILIES)
def test_one_file_serves_every_size(variant, tmp_path):
    """Exported by tools/export_onnx.py from a config and a whole-detector checkpoint (``backbone.*``) of weights
    that are not the initial ones: the file computes what the model that saved them computes."""
    model = trained_like_(reduced_depth(variant))
    config, checkpoint = tmp_path / 'config.py', tmp_path / 'detector.pth'
    config.write_text(f'model = dict(backbone=dict(type={"vt_backbones." + type(model).__name__!r}, '
                      f'arch={model.arch!r}, drop_path_rate=0.0))\n')
    torch.save({'meta': {}, 'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}}, checkpoint)
    out = tmp_path / 'onnx'
    path = str(out / f'{variant}.onnx')
    assert export_tool.main([str(config), path, '--checkpoint', str(checkpoint), '--check-sizes', '97x131']) == 0
    assert os.listdir(out) == [f'{variant}.onnx']  # the temporary file renamed, nothing left beside it

    backbone = OnnxBackbone(path)
    for size, batch in (((97, 131), 1), ((32, 45), 2)):
        check = check_against_torch(model, backbone, size, batch=batch)
        assert check.passed, f'{check} (bound {ATOL} + {RTOL} * max|output|)'
    # The graph cannot refuse an input; OnnxBackbone applies the model's checks.
    with pytest.raises(ValueError, match='at least 32x32'):
        backbone(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match=r'\[B, 3, H, W\]'):
        backbone(torch.randn(1, 4, 64, 64))


@pytest.mark.slow
@pytest.mark.heavy  # 1-5 minutes each
@pytest.mark.parametrize('variant', [v for v in list_models() if v not in FAMILY_VARIANTS])
def test_every_other_variant_exports(variant, tmp_path):
    """The other widths, heads and windows of each family (reduced depth) at the same two sizes, batch 1."""
    path = str(tmp_path / f'{variant}.onnx')
    report = export_onnx(reduced_depth(variant), path, check_sizes=[(97, 131), (32, 45)], log=lambda message: None)
    assert [check.passed for check in report.checks] == [True, True], report.summary()
    assert os.listdir(tmp_path) == [f'{variant}.onnx']


def test_opset_below_18_is_refused(tmp_path):
    with pytest.raises(ValueError, match='opset must be >= 18'):
        export_onnx(torch.nn.Identity(), str(tmp_path / 'x.onnx'), opset=17)
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_export_table_tool_writes_what_it_measured_and_records_a_failure(tmp_path, monkeypatch):
    """tools/export_onnx_all.py, which makes docs/deployment.md's table: a variant whose export fails becomes a row
    saying so and the run goes on; the json and markdown it writes read back as the run measured; no file is left."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, 'tools'))  # as when it runs: it imports its sibling export_onnx
    tool = load_tool('export_onnx_all')

    def export_failing_swin(model, path, **options):
        if os.path.basename(path) == 'swin_t.onnx':
            raise RuntimeError('made to fail')
        return export_onnx(model, path, **options)

    monkeypatch.setattr(tool, 'export_onnx', export_failing_swin)
    monkeypatch.setattr(tool.tempfile, 'tempdir', str(tmp_path))  # where the run's temporary directory goes
    table, rows_file = tmp_path / 'out' / 'table.md', tmp_path / 'out' / 'rows.json'
    assert tool.main(['swin_t', 'coat_lite_tiny', '--sizes', '96x128', '--speed-size', '96x96',
                      '--markdown', str(table), '--json', str(rows_file)]) == 0

    failed, exported = json.loads(rows_file.read_text())
    assert failed == dict(variant='swin_t', depth='2-2-2-2', full_depth=False, error='made to fail')
    assert exported['variant'] == 'coat_lite_tiny' and exported['depth'] == '1-1-1-1' and not exported['full_depth']
    diff, scale = exported['max_abs_diff']['96x128'], exported['max_abs_output']['96x128']
    assert diff <= ATOL + RTOL * scale and scale > 0 and exported['ort_over_torch'] > 0 and exported['mib'] > 1
    lines = table.read_text().splitlines()
    assert lines[0] == '| variant | depth exported | export s | MiB | max abs diff 96×128 | ORT / torch 96×96 |'
    assert lines[2] == '| swin_t | 2-2-2-2 | failed: made to fail |'
    assert lines[3].startswith('| coat_lite_tiny | 1-1-1-1 (reduced) |') and f'| {diff:.1e} |' in lines[3]
    assert sorted(p.name for p in tmp_path.rglob('*')) == ['out', 'rows.json', 'table.md']  # no ONNX file, no temp dir

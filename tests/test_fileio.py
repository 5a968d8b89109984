"""Every file the package and its tools write is whole or absent, with a plain open()'s permissions."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from mmengine.fileio.backends import LocalBackend

from vt_backbones import convert, weights
from vt_backbones.fileio import atomic_output, write_text_atomically

from conftest import load_tool

# Group may read, others nothing: what open() gives under it (0o640) differs from mkstemp's 0o600.
UMASK = 0o027


@pytest.fixture
def umask():
    previous = os.umask(UMASK)
    try:
        yield 0o666 & ~UMASK
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_complete_write_is_renamed_over_the_target(tmp_path: Path, umask: int) -> None:
    target = tmp_path / 'sub' / 'table.md'
    with atomic_output(target) as tmp:
        assert os.path.dirname(tmp) == str(target.parent) and tmp.endswith('.md') and not target.exists()
        Path(tmp).write_text('new')
    assert target.read_text() == 'new' and mode(target) == umask
    assert os.listdir(target.parent) == ['table.md']


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / 'weights.pth'
    target.write_text('previous')
    with pytest.raises(ZeroDivisionError), atomic_output(target) as tmp:
        Path(tmp).write_text('half')
        1 / 0
    assert target.read_text() == 'previous' and os.listdir(tmp_path) == ['weights.pth']


def _png(path: Path) -> None:
    load_tool('visualize').write_image_atomically(np.zeros((4, 6, 3), np.uint8), str(path))


def _loss_plot(path: Path) -> None:
    load_tool('summarize_log').plot_losses([{'iter': 1, 'loss': 2.0}, {'iter': 2, 'loss': 1.0}], ['loss'],
                                           str(path), 'losses')


def _download(path: Path) -> None:
    source = path.parent / 'published.bin'
    source.write_bytes(b'weights')
    weights.download(source.as_uri(), str(path), progress=False)
    source.unlink()


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    'converted weights': ('w.pth', lambda p: convert.save_atomically({'state_dict': {}}, str(p))),
    'checkpoint': ('iter_1.pth', lambda p: LocalBackend().put(b'checkpoint', p)),
    'downloaded weights': ('w.pth', _download),
    'table': ('t.md', lambda p: write_text_atomically(p, '| a |\n')),
    'benchmark json': ('b.json', lambda p: load_tool('benchmark').write_json_atomic(str(p), {'a': 1})),
    'predictions picture': ('predictions.png', _png),
    'loss curves': ('loss_curves.png', _loss_plot),
    'loss curves, no extension': ('loss_curves', _loss_plot),
}


@pytest.mark.parametrize('writer', list(WRITERS))
def test_every_writer_leaves_one_complete_file_the_group_can_read(writer: str, tmp_path: Path, umask: int) -> None:
    name, write = WRITERS[writer]
    target = tmp_path / name
    write(target)
    assert os.listdir(tmp_path) == [name] and target.stat().st_size > 0 and mode(target) == umask
    if name.endswith('.png') or name == 'loss_curves':
        assert target.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    if name == 'w.pth' and writer == 'converted weights':
        assert torch.load(target, weights_only=True) == {'state_dict': {}}


def test_visualize_names_the_argument_of_a_picture_without_an_image_extension(capsys) -> None:
    with pytest.raises(SystemExit):
        load_tool('visualize').parse_args(['config.py', 'model.pth', '--out', 'predictions'])
    assert '--out must name a .png, .jpg, .jpeg file, got predictions' in capsys.readouterr().err

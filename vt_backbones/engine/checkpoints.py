"""Checkpoints that survive a crash, and a resume from the newest intact one (every machine).

``vt_backbones.compat.apply_patches`` (run by ``import vt_backbones``) installs them in mmengine:

- ``LocalBackend.put`` (how mmengine's ``save_checkpoint`` writes a local file) writes to a hidden
  temporary file beside the target, flushes it to disk and renames it over the target (`atomic_put`), so a
  process killed while saving leaves the previous file and ``last_checkpoint`` intact (CheckpointHook writes
  ``last_checkpoint`` only after the checkpoint is complete).
- ``find_latest_checkpoint`` (what ``resume=True`` without a file uses) checks the file that
  ``last_checkpoint`` names (a torch zip archive whose members pass their CRC check) and, when it is
  missing or damaged, says so and falls back to the newest intact ``*_<step>.pth`` beside it
  (`resume_from_intact`). (With ``max_keep_ckpts=1`` there is none to fall back to: CheckpointHook deletes
  the old file before it writes the new one.)
"""
from __future__ import annotations

import logging
import os
import os.path as osp
import re
import zipfile
from typing import Callable

from mmengine.fileio.backends import LocalBackend
from mmengine.logging import print_log

from ..fileio import atomic_output


def atomic_put(original: Callable) -> Callable:
    """``LocalBackend.put`` through `vt_backbones.fileio.atomic_output`: never a half-written target."""
    def put(self: LocalBackend, obj: bytes, filepath: str | os.PathLike) -> None:
        with atomic_output(filepath) as tmp, open(tmp, 'wb') as f:
            f.write(obj)
    return put


_STEP_CHECKPOINT = re.compile(r'_(\d+)\.pth$')


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` is not a complete checkpoint (``None`` when it is): missing, truncated, corrupt.

    mmengine saves torch's zip format; a file cut short loses the archive's central directory at its
    end, and a damaged member fails its CRC-32.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f'it is not a complete checkpoint ({err}): a truncated or interrupted write'
    return None if bad is None else f'its member {bad} fails its CRC check'


def resume_from_intact(original: Callable) -> Callable:
    """``find_latest_checkpoint`` that skips a missing or damaged latest file for the newest intact one."""
    def find(path: str) -> str | None:
        latest = original(path)
        if not latest or checkpoint_problem(latest) is None:
            return latest
        folder = osp.dirname(latest) or path
        steps = {osp.join(folder, name): int(match.group(1)) for name in os.listdir(folder)
                 if not name.startswith('.') and (match := _STEP_CHECKPOINT.search(name))}
        older = sorted((f for f in steps if osp.abspath(f) != osp.abspath(latest)), key=steps.get, reverse=True)
        fallback = next((f for f in older if checkpoint_problem(f) is None), None)
        message = f'The latest checkpoint {latest} (named in {osp.join(path, "last_checkpoint")}) cannot be ' \
                  f'resumed: {checkpoint_problem(latest)}. '
        if fallback is None:
            raise RuntimeError(message + f'No other intact checkpoint in {folder}.')
        print_log(message + f'Resuming from the previous one, {fallback}.', logger='current', level=logging.WARNING)
        return fallback
    return find

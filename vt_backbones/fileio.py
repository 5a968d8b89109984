"""Writing files whole or not at all: every file the package and its tools write goes through `atomic_output`."""
from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path beside ``path`` for the caller to write; when the block ends without an error the
    file's data is synced to disk and the file renamed over ``path``, else it is removed.

    A reader (or a resumed run) never sees a half-written file, and an existing ``path`` stays as it was until the
    new one is complete. The temporary name keeps ``path``'s extension (writers such as matplotlib and mmcv pick
    the format from it), and the file gets a plain ``open()``'s permissions (0o666 less the umask), not
    ``mkstemp``'s 0o600, which would hide checkpoints, weights and pictures from the group on a shared machine.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f'.{name}.{secrets.token_hex(6)}{os.path.splitext(name)[1]}')
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the name is ours; the umask applies
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp, open(tmp, 'w') as f:
        f.write(text)

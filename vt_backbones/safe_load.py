"""Reading checkpoints that weights-only loading refuses, without running anything they name.

Official training checkpoints keep more than weights next to ``'model'``: a yacs ``CfgNode`` under
``'config'`` (the Swin codebase, hence CrossFormer and Focal), an ``argparse.Namespace`` under ``'args'``
(DeiT-style trainers: CoaT, Twins), numpy scalars, optimizer / lr-scheduler / loss-scaler state.
``torch.load(weights_only=True)`` refuses such a file, and ``weights_only=False`` would import and call
whatever the file names. `restricted_load` is the middle way:

- tensors, storages and the containers torch's weights-only loader builds are built as usual (the
  globals of ``torch._weights_only_unpickler._get_allowed_globals``: rebuild functions, dtypes,
  ``OrderedDict``, ``torch.Size``, ...);
- numpy scalars of a numeric dtype become real numpy scalars (built from their bytes, nothing called);
- every other global the file names (a class, a function such as ``os.system``) is *not imported*: it
  becomes an inert `Skipped` subclass named after it, whose "call" only stores its arguments. Nothing in
  the file is executed, whether or not the module it names is installed.

`skipped_objects` lists where such placeholders ended up, so a caller can report what it left out.
"""
from __future__ import annotations

import functools
import io
import pickle
import types
from typing import Any, BinaryIO, Iterator

import numpy as np
import torch
from torch._weights_only_unpickler import _get_allowed_globals

# How numpy pickles a scalar and its dtype (numpy 2 names, and numpy 1 names in older files).
_NUMPY_SCALAR = {'numpy._core.multiarray.scalar', 'numpy.core.multiarray.scalar'}
_NUMPY_DTYPE = 'numpy.dtype'


class Skipped:
    """Stand-in for an object whose class or function the restricted reader would not import.

    Subclasses are made per name (``qualname``); an instance records what the pickle gave it (the
    constructor arguments, ``__setstate__`` state, appended items and set items) and does nothing else.
    """
    qualname = '?'

    def __new__(cls, *args: Any, **kwargs: Any) -> Skipped:
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.entries = args, kwargs, None, [], {}
        return obj

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # A dict or list subclass (yacs' CfgNode is a dict) is filled with SETITEMS / APPENDS after it is built.
    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries[key] = value

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __repr__(self) -> str:
        return f'<skipped {self.qualname}>'


@functools.lru_cache(maxsize=None)
def _skipped_class(qualname: str) -> type[Skipped]:
    return type(f'Skipped[{qualname}]', (Skipped,), {'qualname': qualname})


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[str, Any]:
    return dict(_get_allowed_globals())


class _NumpyDtype:
    """``numpy.dtype`` as pickled (``dtype(name, align, copy)`` then ``__setstate__``), numeric names only."""

    def __new__(cls, name: Any, align: bool = False, copy: bool = True) -> Any:
        dtype = np.dtype(name) if isinstance(name, str) else None
        if dtype is None or dtype.kind not in 'biufc':
            return _skipped_class(_NUMPY_DTYPE)(name, align, copy)
        return np.dtype(name, align=bool(align), copy=True)  # a copy: __setstate__ must not touch numpy's own


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy...multiarray.scalar(dtype, bytes)`` for the numeric dtypes `_NumpyDtype` built."""
    if isinstance(dtype, np.dtype) and isinstance(data, bytes) and len(data) == dtype.itemsize:
        return np.frombuffer(data, dtype=dtype)[0]
    return _skipped_class('numpy.multiarray.scalar')(dtype, data)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals are torch's weights-only set, numeric numpy scalars, or `Skipped`."""

    def find_class(self, module: str, name: str) -> Any:
        qualname = f'{module}.{name}'
        if qualname in _allowed_globals():
            return _allowed_globals()[qualname]
        if qualname == _NUMPY_DTYPE:
            return _NumpyDtype
        if qualname in _NUMPY_SCALAR:
            return _numpy_scalar
        return _skipped_class(qualname)


def _load(file: BinaryIO, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# What torch.load takes as ``pickle_module``: torch subclasses ``Unpickler`` (adding its storage
# handling) and calls ``load`` for the header records of legacy-format files.
_restricted_pickle = types.SimpleNamespace(__name__='vt_backbones.safe_load', Unpickler=RestrictedUnpickler,
                                           load=_load, Pickler=pickle.Pickler)


def restricted_load(f: str | BinaryIO | io.BytesIO, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with `RestrictedUnpickler`: tensors and containers built, nothing else imported or run."""
    return torch.load(f, map_location=map_location, weights_only=False, pickle_module=_restricted_pickle)


def skipped_objects(obj: Any, path: str = '') -> Iterator[tuple[str, str]]:
    """``(path, qualname)`` of every `Skipped` in dicts, lists and tuples: ``('config', 'yacs.config.CfgNode')``."""
    if isinstance(obj, Skipped):
        yield path or '<top level>', obj.qualname
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from skipped_objects(value, f'{path}.{key}' if path else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from skipped_objects(value, f'{path}[{i}]')


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file (timm's hub files): a header and raw tensors, nothing that could run."""
    try:
        from safetensors.torch import load_file
    except ImportError as err:
        raise ImportError(f'reading {path} needs the safetensors package: pip install safetensors') from err
    return load_file(path, device='cpu')

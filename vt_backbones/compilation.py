"""Regional compilation of the repeated blocks: the backbones' option ``compile_blocks``
(`vt_backbones.base.VisionBackbone.run_block`)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn

from . import compat


# Graphs one compiled block class may hold: one per block configuration (stage width, heads, shift, ...) and
# per mode (train / eval, autocast dtype); dynamo's default of 8 would silently fall back to eager.
BLOCK_RECOMPILE_LIMIT = 64


@functools.cache
def compiled_forward(block_class: type[nn.Module], options: tuple[tuple[str, Any], ...] = ()) -> Callable[..., Any]:
    """``block_class.forward`` compiled once for all instances of the class (regional compilation, the option
    ``compile_blocks``), with the torch.compile ``options`` (default: inductor, dynamic shapes).

    Compiling the repeated blocks instead of the whole backbone keeps compile time in seconds and leaves the
    modules (and their ``state_dict`` keys) untouched. Dynamo treats a block's parameters as graph inputs, so
    one graph serves every block of the class with the same configuration, and dynamic shapes keep the sizes
    (of the tensors and of the ints in a block's arguments, e.g. a `WindowGrid`) symbolic, so a new input size
    does not compile again.
    """
    compat.prepare_block_compilation()
    return torch.compile(block_class.forward, **{'dynamic': True, **dict(options)})


def run_compiled(forward: Callable[..., Any], block: nn.Module, *args: Any) -> Any:
    with torch._dynamo.config.patch(recompile_limit=BLOCK_RECOMPILE_LIMIT):
        return forward(block, *args)

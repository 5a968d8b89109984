"""Regional compilation of the repeated blocks: the backbones' option ``compile_blocks``
(`vt_backbones.base.VisionBackbone.run_block`)."""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn

from . import compat


#: Device types on which ``compile_blocks=True`` leaves the blocks eager: there inductor's blocks made the step
#: slower, not faster (CPU, fp32 fwd+bwd at 224 and 512, AVX2: 1.07-2.09x the eager step, after 90-1120 s of
#: compiling; with static shapes 0.93-1.21x after 41-98 s; issue 24). A dict of options is the user's explicit
#: request and compiles on every device.
EAGER_WITH_TRUE = frozenset({'cpu'})

# Graphs one compiled block class may hold: one per block configuration (stage width, heads, shift, ...) and
# per mode (train / eval, autocast dtype); dynamo's default of 8 would silently fall back to eager.
BLOCK_RECOMPILE_LIMIT = 64


# True while blocks compiled with static shapes run (`run_compiled`): `layers.tracing_static_blocks_for_cpu` reads
# it as dynamo traces them, and dynamo guards every graph on the value it read. Only static shapes take that path:
# its views of symbolic sizes would add size guards, i.e. a compilation per new size.
static_shape_blocks_running = False


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
    options = {'dynamic': True, **dict(options)}
    forward = torch.compile(block_class.forward, **options)
    forward.static_shapes = options['dynamic'] is False
    return forward


def compiles_on(compile_blocks: bool | dict, device: torch.device) -> bool:
    """Whether blocks run compiled on ``device``: never with False, always with a dict of torch.compile options,
    with True everywhere but on the device types of `EAGER_WITH_TRUE`."""
    if isinstance(compile_blocks, dict):
        return True
    return compile_blocks and device.type not in EAGER_WITH_TRUE


def describe(compile_blocks: bool | dict) -> str | None:
    """The construction's log line about ``compile_blocks`` (None when it is False)."""
    if compile_blocks is False:
        return None
    if isinstance(compile_blocks, dict):
        return f'compile_blocks={compile_blocks!r}: the blocks run compiled with these options on every device'
    eager = ', '.join(sorted(EAGER_WITH_TRUE))
    return (f'compile_blocks=True: the blocks run compiled (inductor) on every device but {eager}, where they stay '
            f'eager since compiled blocks measured slower than eager there; compile_blocks=dict() compiles there too')


def run_compiled(forward: Callable[..., Any], block: nn.Module, *args: Any) -> Any:
    global static_shape_blocks_running
    outer, static_shape_blocks_running = static_shape_blocks_running, forward.static_shapes
    try:
        with torch._dynamo.config.patch(recompile_limit=BLOCK_RECOMPILE_LIMIT):
            return forward(block, *args)
    finally:
        static_shape_blocks_running = outer

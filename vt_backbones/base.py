"""The backbone contract every family implements, written once.

``forward(x)`` takes ``x: [B, in_channels, H, W]`` with H, W >= 32 and returns a tuple of NCHW maps
for ``out_indices`` (stage ``i`` has stride ``4 * 2**i`` and spatial size ``ceil(H / stride) x
ceil(W / stride)``); ``num_features`` lists the channels of all ``NUM_STAGES`` stages and ``out_channels``
those of the returned maps.

A family subclass builds its layers in ``__init__`` (setting the attributes its base class declares, e.g.
``num_features``), then provides:

* ``stem``: the module that turns the image into stage 0's input;
* ``stage_parts(i)``: the modules that compute stage ``i``'s output from the previous stage's output (its
  downsampling included). They and the output norm ``norm{i}``, if the family has one, are freezing group
  ``i + 1`` (group 0 is the stem): ``frozen_stages = k`` freezes groups ``0..k``, so the outputs of stages
  ``1..k`` stop depending on any trainable parameter while the downsampling that feeds stage ``k + 1`` stays
  trainable (as ResNet's ``frozen_stages``);
* ``forward_stage(i, x)``: stage ``i`` from the image (``i = 0``) or from what the previous stage passed on,
  returning what it passes on and its output.

When the outermost ``__init__`` of a family returns, the base class checks that the declared attributes are
set, then runs the family's ``reset_parameters()`` and freezes the frozen stages: a family cannot forget either.
It validates arguments and inputs, runs the stages up to the last requested one, crops the outputs to the
contract's size, keeps frozen stages frozen and norms in eval mode through ``train()``, and loads
``init_cfg=Pretrained`` through the weight converter (also given as mmdet/mmseg's deprecated ``pretrained=`` path).
"""
from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from .compilation import compiled_forward, compiles_on, describe, run_compiled
from .engine.recipes import Recipe
from .layers import bhwc_to_nchw, ceil_div, drop_path_rates

NUM_STAGES = 4
ALL_STAGES = tuple(range(NUM_STAGES))  # the default out_indices
MIN_SIZE = 32


def stage_stride(index: int) -> int:
    """The stride of stage ``index``'s output: 4, 8, 16, 32."""
    return 4 * 2 ** index


def stage_channels(embed_dims: int) -> tuple[int, ...]:
    """Channels doubling from stage to stage, as Swin's layout: ``C, 2C, 4C, 8C``."""
    return tuple(embed_dims * 2 ** i for i in range(NUM_STAGES))


def pretrained_init_cfg(pretrained: str | None, init_cfg: dict | list | None) -> dict | list | None:
    """The ``init_cfg`` for the deprecated ``pretrained=`` argument, as mmdet's and mmseg's backbones take it.

    mmseg's ``EncoderDecoder`` passes its ``model.pretrained`` to the backbone, so configs written for
    mmseg's own backbones give it: a path or URL becomes ``init_cfg=dict(type='Pretrained', checkpoint=path)``
    (loaded through the weight converter like any ``init_cfg``), with a deprecation warning.
    """
    if pretrained is None:
        return init_cfg
    if not isinstance(pretrained, str):
        raise ValueError(f'pretrained must be a checkpoint path or URL (str) or None, got {pretrained!r}')
    if init_cfg is not None:
        raise ValueError(f'pretrained={pretrained!r} and init_cfg={init_cfg!r} are both set; give only '
                         "init_cfg=dict(type='Pretrained', checkpoint=...) (in an mmseg config: "
                         'model.pretrained=None)')
    # stacklevel: the code that called the family's constructor (through its construction wrapper).
    warnings.warn(f'pretrained is deprecated, use '
                  f"init_cfg=dict(type='Pretrained', checkpoint={pretrained!r}) instead", FutureWarning, stacklevel=5)
    return dict(type='Pretrained', checkpoint=pretrained)


#: Builds the counterpart of one of our models in another library, for ``tools/benchmark.py --reference``:
#: ``builder(variant, ours, options)`` -> a module whose forward returns the same NCHW maps as ours
#: (``options``: ``size``, ``drop_path_rate``, ``with_cp``).
ReferenceBuilder = Callable[[str, nn.Module, Any], nn.Module]


def _then_finish_construction(init: Callable[..., None]) -> Callable[..., None]:
    """A family's ``__init__`` followed, when it is the outermost one of the object, by
    `VisionBackbone.finish_construction`."""
    @functools.wraps(init)
    def construct(self: VisionBackbone, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is construct:  # not a base class's __init__ called through super()
            self.finish_construction()
    return construct


class VisionBackbone(BaseModule):
    """Base class of all vt_backbones backbones (see the module docstring for the contract).

    ``compile_blocks``: ``True`` compiles each repeated block class once (`compiled_forward`: inductor, dynamic
    shapes) on GPUs and leaves them eager on a CPU, where they did not pay (`compiles_on`; the construction logs
    which); a dict gives the ``torch.compile`` options instead (e.g. ``dict(backend='aot_eager')``, or ``dict()``
    for the defaults) and compiles on every device; the stem,
    downsampling and norms stay eager. Same outputs as eager within float error; composes with ``with_cp``,
    ``frozen_stages`` and autocast, and leaves ``state_dict`` keys unchanged. The first call of each mode
    (train / eval, autocast dtype) compiles; later input sizes reuse the graphs.
    """

    #: size name -> hyper-parameters; families fill it in.
    arch_settings: dict[str, dict[str, Any]] = {}
    #: variant name (``swin_t``) -> size name (``tiny``); families fill it in.
    variants: dict[str, str] = {}
    #: the optimizer recipe of its configs per task: ``'mmdet'``, ``'mmseg'`` and, where the 3x schedule
    #: differs, ``'mmdet_3x'``; families fill it in (a test fails for a family without one).
    recipes: dict[str, Recipe] = {}
    #: reference name (the import name of its package: ``'mmdet'``, ``'timm'``...) -> `ReferenceBuilder`
    reference_builders: dict[str, ReferenceBuilder] = {}
    #: kinds of block that alternate within a stage (2: regular and shifted windows, local and global attention,
    #: ...): `reduced_arch` keeps this many blocks per stage.
    block_kinds: int = 1
    #: channels of the ``NUM_STAGES`` stages; set by the family's ``__init__``.
    num_features: tuple[int, ...]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if '__init__' in vars(cls):
            cls.__init__ = _then_finish_construction(vars(cls)['__init__'])

    def __init__(self, *, arch: str | dict, in_channels: int = 3, out_indices: Sequence[int] = ALL_STAGES,
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 drop_path_rate: float = 0.0, init_cfg: dict | list | None = None,
                 pretrained: str | None = None, compile_blocks: bool | dict = False) -> None:
        super().__init__(init_cfg=pretrained_init_cfg(pretrained, init_cfg))
        self.arch = self.resolve_arch(arch)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        out_indices = tuple(out_indices) if isinstance(out_indices, Sequence) else (out_indices,)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i < NUM_STAGES for i in out_indices) \
                or len(set(out_indices)) != len(out_indices):
            raise ValueError(f'out_indices must be distinct stage indices in 0..{NUM_STAGES - 1}, '
                             f'got {out_indices!r}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f'frozen_stages must be an int in -1..{NUM_STAGES} (-1: none, 0: the stem, '
                             f'i: the stem and stages 1..i), got {frozen_stages!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')
        if not isinstance(compile_blocks, (bool, dict)):
            raise ValueError(f'compile_blocks must be True, False or a dict of torch.compile options, '
                             f'got {compile_blocks!r}')
        self.in_channels = in_channels
        self.out_indices = tuple(sorted(out_indices))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.drop_path_rate = drop_path_rate
        self.compile_blocks = compile_blocks
        compilation_note = describe(compile_blocks)
        if compilation_note:
            print_log(f'{type(self).__name__}: {compilation_note}', logger='current')

    # ---- arch -------------------------------------------------------------------------------
    @classmethod
    def resolve_arch(cls, arch: str | dict) -> dict[str, Any]:
        """Returns the hyper-parameters of a size name or checks a dict of them."""
        required = set(next(iter(cls.arch_settings.values())))
        if isinstance(arch, str):
            if arch not in cls.arch_settings:
                raise ValueError(f'unknown arch {arch!r} for {cls.__name__}; '
                                 f'valid: {sorted(cls.arch_settings)} or a dict with keys {sorted(required)}')
            return dict(cls.arch_settings[arch])
        if isinstance(arch, dict):
            missing = required - set(arch)
            if missing:
                raise ValueError(f'arch dict for {cls.__name__} lacks {sorted(missing)}; '
                                 f'it needs the keys {sorted(required)}')
            return dict(arch)
        raise TypeError(f'arch must be one of {sorted(cls.arch_settings)} or a dict, got {arch!r}')

    @classmethod
    def reduced_arch(cls, arch: str) -> dict[str, Any]:
        """The setting ``arch`` with the fewest blocks per stage that hold every kind of block it has: the family's
        ``block_kinds`` (never more than its own), and one parallel block if it has any (CoaT). A model built with
        it has the keys of ``arch`` at a smaller depth, and torch.export traces the blocks of a kind alike."""
        reduced = dict(cls.arch_settings[arch])
        for key in ('depths', 'serial_depths'):
            if key in reduced:
                reduced[key] = tuple(min(depth, cls.block_kinds) for depth in reduced[key])
        if reduced.get('parallel_depth'):
            reduced['parallel_depth'] = 1
        return reduced

    @classmethod
    def variant_where(cls, facts: Callable[[dict[str, Any]], tuple], found: tuple) -> str | None:
        """The variant whose hyper-parameters give ``facts(setting) == found`` (how converters name a checkpoint)."""
        return next((variant for variant, size in cls.variants.items() if facts(cls.arch_settings[size]) == found),
                    None)

    @property
    def out_channels(self) -> tuple[int, ...]:
        return tuple(self.num_features[i] for i in self.out_indices)

    # ---- construction ---------------------------------------------------------------------
    def finish_construction(self) -> None:
        """Runs once the family's outermost ``__init__`` has returned: checks that the attributes declared (with
        a type) on the classes of the family are set, then initialises the family's way and freezes."""
        declared = {name for cls in type(self).__mro__ if issubclass(cls, VisionBackbone)
                    for name in inspect.get_annotations(cls)}
        missing = sorted(name for name in declared if not hasattr(self, name))
        if missing:
            raise TypeError(f'{type(self).__name__}.__init__ must set {missing} (declared by its base classes)')
        abstract = [name for name in ('stem', 'stage_parts', 'forward_stage')
                    if getattr(type(self), name) is getattr(VisionBackbone, name)]
        if abstract:
            raise TypeError(f'{type(self).__name__} must define {abstract} (see vt_backbones.base)')
        if len(self.num_features) != NUM_STAGES:
            raise TypeError(f'{type(self).__name__}.num_features must list {NUM_STAGES} stages, '
                            f'got {self.num_features!r}')
        self.reset_parameters()
        self.freeze_stages()

    # ---- to be provided by the family -------------------------------------------------------
    @property
    def stem(self) -> nn.Module:
        """The module that maps the image to stage 0's input (freezing group 0)."""
        raise NotImplementedError

    def stage_parts(self, index: int) -> list[nn.Module]:
        """The modules of stage ``index`` (its downsampling included), without its output norm."""
        raise NotImplementedError

    def forward_stage(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Stage ``index`` on the image (``index = 0``) or on what stage ``index - 1`` passed on:
        ``(what it passes on to stage index + 1, its output [B, num_features[index], H_i, W_i])``, the output
        NCHW, before cropping (``H_i >= ceil(H / stride)``)."""
        raise NotImplementedError

    # ---- stages -----------------------------------------------------------------------------
    @property
    def last_stage(self) -> int:
        """The last stage forward computes: the deepest requested one (later stages are skipped)."""
        return self.out_indices[-1]

    def output_norm(self, index: int) -> nn.Module | None:
        """The family's norm of stage ``index``'s output (``norm{index}``), if it has one."""
        return getattr(self, f'norm{index}', None)

    def stage_modules(self, index: int) -> list[nn.Module]:
        """Freezing group ``index``: the stem (0), or stage ``index - 1`` with its output norm."""
        if index == 0:
            return [self.stem]
        norm = self.output_norm(index - 1)
        return self.stage_parts(index - 1) + ([norm] if norm is not None else [])

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The outputs of stages ``0..last_stage``, NCHW, before cropping: ``[B, num_features[i], H_i, W_i]``
        with ``H_i >= ceil(H / stage_stride(i))``."""
        outs = []
        for index in range(self.last_stage + 1):
            x, out = self.forward_stage(index, x)
            outs.append(out)
        return outs

    # ---- forward ----------------------------------------------------------------------------
    def check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f'{type(self).__name__} expects x of shape [B, {self.in_channels}, H, W], got {shape}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'x has {x.shape[1]} channels but in_channels={self.in_channels}')
        if x.shape[2] < MIN_SIZE or x.shape[3] < MIN_SIZE:
            raise ValueError(f'x must be at least {MIN_SIZE}x{MIN_SIZE} (H, W), got {tuple(x.shape[2:])}')

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        self.check_input(x)
        H, W = x.shape[2:]
        outs = []
        for i, feat in enumerate(self.forward_features(x)):
            if i in self.out_indices:
                stride = stage_stride(i)
                outs.append(feat[:, :, :ceil_div(H, stride), :ceil_div(W, stride)])  # exact on symbolic sizes
        return tuple(outs)

    def run_block(self, block: nn.Module, *args: Any) -> Any:
        """Runs a block: through its class's compiled forward when ``compile_blocks`` (`compiled_forward`), with
        activation checkpointing when ``with_cp`` and gradients are on."""
        call = block
        if self.compile_blocks is not False and compiles_on(  # the eager path looks for no device
                self.compile_blocks, next(a for a in args if isinstance(a, Tensor)).device):
            options = self.compile_blocks if isinstance(self.compile_blocks, dict) else {}
            call = functools.partial(run_compiled, compiled_forward(type(block), tuple(sorted(options.items()))),
                                     block)
        if self.with_cp and torch.is_grad_enabled() and any(
                isinstance(a, Tensor) and a.requires_grad for a in args):
            return checkpoint(call, *args, use_reentrant=False)
        return call(*args)

    # ---- freezing and norm_eval -------------------------------------------------------------
    def frozen_modules(self) -> Iterable[nn.Module]:
        for index in range(self.frozen_stages + 1):
            yield from self.stage_modules(index)

    def freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'VisionBackbone':
        super().train(mode)
        self.freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    # ---- weights ----------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Initialises the family's way, or loads (and converts) ``init_cfg=dict(type='Pretrained')``."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from .convert import load_pretrained  # the converter imports the model registry
            load_pretrained(self, cfg['checkpoint'])
            self._is_init = True
            return
        if cfg is None:  # already initialised at construction, the family's way
            self._is_init = True
            return
        super().init_weights()

    def reset_parameters(self) -> None:
        """The family's own initialisation (truncated normal for linears by default)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, _BatchNorm)):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)


class StagedBackbone(VisionBackbone):
    """The layout Swin, GG-Transformer, CrossFormer and Focal Transformer share: a patch embedding, then stages
    of blocks on ``[B, H, W, C]`` maps, each ending with the downsampling into the next stage, and optional
    output norms ``norm{i}``. The family sets the attributes declared here."""

    #: image -> ``[B, H / 4, W / 4, C]``
    patch_embed: nn.Module
    #: dropout after the patch embedding
    pos_drop: nn.Module
    #: the stages, called as ``layer(x, run_block)`` on ``[B, H, W, C]``, each with its ``blocks`` and the
    #: ``downsample`` into the next stage (``None`` in the last)
    layers: nn.ModuleList

    @property
    def stem(self) -> nn.Module:
        return self.patch_embed

    def stage_parts(self, index: int) -> list[nn.Module]:
        downsample = [self.layers[index - 1].downsample] if index > 0 else []
        return downsample + [self.layers[index].blocks]

    def blocks(self) -> Iterator[nn.Module]:
        """Every block, stage by stage."""
        for stage in self.layers:
            yield from stage.blocks

    def stage_arguments(self, drop_path_rate: float) -> list[dict[str, Any]]:
        """Per stage, the arguments every stage of this layout takes: ``dim`` (``num_features``), ``depth`` and
        ``num_heads`` (from ``arch``), ``drop_paths`` (linear over all blocks) and ``downsample`` (all but the
        last stage)."""
        depths, num_heads = self.arch['depths'], self.arch['num_heads']
        drop_paths = drop_path_rates(depths, drop_path_rate)
        return [dict(dim=self.num_features[i], depth=depths[i], num_heads=num_heads[i], drop_paths=drop_paths[i],
                     downsample=i < NUM_STAGES - 1) for i in range(NUM_STAGES)]

    def add_output_norms(self) -> None:
        """One LayerNorm ``norm{i}`` per requested output, as Swin's dense backbone."""
        for i in self.out_indices:
            self.add_module(f'norm{i}', nn.LayerNorm(self.num_features[i]))

    def downsample_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        """``[B, H, W, C]`` -> the next stage's ``[B, H / 2, W / 2, C']``."""
        return stage.downsample(x)

    def forward_stage(self, index: int, x: Tensor) -> tuple[Tensor, Tensor]:
        if index == 0:
            x = self.pos_drop(self.patch_embed(x))
        else:
            x = self.downsample_stage(self.layers[index - 1], x)
        x = self.layers[index](x, self.run_block)
        norm = self.output_norm(index)
        return x, bhwc_to_nchw(norm(x) if norm is not None else x)

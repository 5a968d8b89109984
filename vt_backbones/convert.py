"""Weight conversion: official / timm / OpenMMLab checkpoints -> our backbone layout.

Every family registers a `FamilyConverter` (at the end of its model file) that knows its source
formats: how to recognise each one, how to rename/reorder its keys to ours, and what to drop. Every
converter also has our own layout, ``ours`` (nothing to convert), first: what the converter writes, a
model's ``state_dict()`` and the backbone of a whole detector/segmentor we trained load the same way.
The generic steps live here:

1. read the file weights-only (or, when it holds other objects too, with `safe_load`'s restricted reader,
   which leaves them unbuilt and reported) and unwrap ``{'model': ...}`` / ``{'state_dict': ...}`` / a bare dict;
2. strip ``module.`` and keep only ``backbone.*`` when a whole detector/segmentor was saved;
3. detect the family and format (or use the model given), rename, drop what a backbone does not use;
4. check against the target model's state_dict: resize relative-position tables (bicubic) when the
   window differs, accept only the documented new keys (e.g. output norms) as missing, and fail
   naming every missing, unexpected or mis-shaped key — never a silent partial load.
"""
from __future__ import annotations

import functools
import math
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import safe_load
from .fileio import atomic_output
from .safe_load import restricted_load

StateDict = dict[str, Tensor]


class ConversionError(ValueError):
    """A checkpoint that cannot be converted into the requested model, with the reason."""


@dataclass
class SourceFormat:
    """One layout a family's weights come in.

    ``detect`` says whether a (prefix-stripped) state_dict is in this layout; ``to_ours`` renames and
    reorders it into our key names and returns the keys it dropped with the reason. ``model_kwargs``
    are the constructor arguments the layout implies (e.g. Focal's "useconv" stem); a model built for
    the checkpoint by name gets them, and the report names them.
    """
    name: str
    detect: Callable[[Mapping[str, Tensor]], bool]
    to_ours: Callable[[StateDict], tuple[StateDict, dict[str, str]]]
    model_kwargs: dict[str, Any] = field(default_factory=dict)


#: The source format of a state_dict in our own layout (keys and tensors are taken as they are).
OURS = 'ours'


def _nothing_to_convert(state_dict: StateDict) -> tuple[StateDict, dict[str, str]]:
    return dict(state_dict), {}


def key_pattern(key: str) -> str:
    """``key`` with every numeric component (stage, block, layer index) written ``#``: the same for any depth."""
    return re.sub(r'(?<![^.])\d+(?![^.])', '#', key)


@dataclass
class OurLayout:
    """Our own layout under constructor arguments that change its keys or shapes (GG's ``glance_pos_bias``,
    Focal's ``use_conv_embed``): ``detect`` recognises a state_dict saved from such a model, and a model built
    for it by name gets ``model_kwargs``."""
    model_kwargs: dict[str, Any]
    detect: Callable[[Mapping[str, Tensor]], bool]


@dataclass
class FamilyConverter:
    """The conversion knowledge of one family.

    ``formats`` lists the foreign layouts; our own (`OURS`: plain, and each of ``our_layouts``) is put before
    them, so that a state_dict saved from our model is taken as it is, even where a foreign layout uses the
    same key names (Swin, Twins, Shuffle and CrossFormer keep the official ones).
    """
    family: str  # the backbone class name, e.g. 'SwinTransformer'
    formats: list[SourceFormat]
    guess_variant: Callable[[Mapping[str, Tensor]], str | None]  # on our key names
    resizable: Callable[[str, Tensor, torch.Size], Tensor | None] = lambda key, value, shape: None
    new_keys: tuple[str, ...] = ()  # regexes of our keys a checkpoint may lack (documented)
    # Keys of a source layout that repeat a module shared by several paths (copy key -> original key; CoaT):
    # a real checkpoint holds equal tensors under them, which tests building fake checkpoints must respect.
    shared_copies: Callable[[Mapping[str, Tensor]], dict[str, str]] = lambda state_dict: {}
    our_layouts: tuple[OurLayout, ...] = ()  # besides the plain one

    def __post_init__(self) -> None:
        def plain(state_dict: Mapping[str, Tensor]) -> bool:
            return self.is_ours(state_dict) and not any(layout.detect(state_dict) for layout in self.our_layouts)

        def of(layout: OurLayout) -> Callable[[Mapping[str, Tensor]], bool]:
            return lambda state_dict: self.is_ours(state_dict) and layout.detect(state_dict)

        ours = [SourceFormat(OURS, plain, _nothing_to_convert)]
        ours += [SourceFormat(OURS, of(layout), _nothing_to_convert, dict(layout.model_kwargs))
                 for layout in self.our_layouts]
        self.formats = ours + list(self.formats)

    def is_ours(self, state_dict: Mapping[str, Tensor]) -> bool:
        """Whether the keys are those of one of our models of this family, at any depth (`key_pattern`): each is a
        key such a model has, and each kind of key every such model has is there. Whether the state_dict fits
        the target model is checked when it is converted, as for every format."""
        every, required = self.our_key_patterns
        patterns = {key_pattern(key) for key in state_dict}
        return patterns <= every and required <= patterns

    @functools.cached_property
    def our_key_patterns(self) -> tuple[frozenset[str], frozenset[str]]:
        """The `key_pattern`s of our models of the family (each arch at its reduced depth, which has every kind of
        block, plain and with each of ``our_layouts``): those any of them has, and those all of them have but for
        the output norms (``norm{i}``, per ``out_indices``) and the keys a checkpoint may lack (``new_keys``)."""
        from . import families
        cls = next(c for c in families() if c.__name__ == self.family)
        every: set[str] = set()
        required: set[str] | None = None
        with torch.device('meta'):  # keys only: no memory, no init cost
            for arch in cls.arch_settings:
                for kwargs in [{}, *(layout.model_kwargs for layout in self.our_layouts)]:
                    keys = cls(arch=cls.reduced_arch(arch), **kwargs).state_dict().keys()
                    every.update(key_pattern(key) for key in keys)
                    always = {key_pattern(key) for key in keys if not re.match(r'norm\d\.', key)
                              and not any(re.fullmatch(pattern, key) for pattern in self.new_keys)}
                    required = always if required is None else required & always
        return frozenset(every), frozenset(required)

    def detect_format(self, state_dict: Mapping[str, Tensor]) -> SourceFormat | None:
        return next((fmt for fmt in self.formats if fmt.detect(state_dict)), None)


CONVERTERS: dict[str, FamilyConverter] = {}


def register_converter(converter: FamilyConverter) -> FamilyConverter:
    CONVERTERS[converter.family] = converter
    return converter


@dataclass
class ConversionReport:
    source_format: str
    model: str
    dropped: dict[str, str] = field(default_factory=dict)
    renamed: int = 0
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # checkpoint entries left unbuilt -> their class

    def summary(self) -> str:
        lines = [f'{OURS} (nothing to convert): weights for {self.model}' if self.source_format == OURS else
                 f'converted {self.source_format} weights for {self.model}: {self.renamed} keys renamed']
        if self.model_kwargs:
            args = ', '.join(f'{k}={v!r}' for k, v in self.model_kwargs.items())
            lines.append(f'  build the backbone with {args} to load them')
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            lines.append(f'  dropped {len(keys)} ({reason}): {_abbreviate(keys)}')
        by_shape: dict[tuple, list[str]] = {}
        for key, shapes in self.resized.items():
            by_shape.setdefault(shapes, []).append(key)
        for (old, new), keys in by_shape.items():
            lines.append(f'  resized {len(keys)} {list(old)} -> {list(new)} (bicubic): {_abbreviate(sorted(keys))}')
        if self.new:
            lines.append(f'  new in our model, left as initialised: {_abbreviate(self.new)}')
        if self.skipped:
            entries = [f'{path} ({qualname})' for path, qualname in self.skipped.items()]
            lines.append(f'  skipped {len(entries)} non-tensor objects of the file (not built, nothing in them '
                         f'run): {_abbreviate(entries)}')
        return '\n'.join(lines)


def _abbreviate(keys: list[str], limit: int = 6) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


# ---- reading ------------------------------------------------------------------------------------
def read_checkpoint(path: str) -> dict:
    """Loads a checkpoint file, with a clear error for missing or damaged files.

    Weights-only first (the safe default). A file that holds other objects too (an official training
    checkpoint's config, args, numpy scalars, ...) is read again with `safe_load.restricted_load`, which
    builds its tensors and containers and leaves every other object an inert `safe_load.Skipped`
    placeholder, without importing or calling anything the file names; `skipped_objects` lists them.
    """
    if not os.path.isfile(path):
        raise ConversionError(f'checkpoint file not found: {path}')
    if path.endswith('.safetensors'):  # timm's hub files: tensors only, by construction
        try:
            return safe_load.read_safetensors(path)
        except Exception as err:  # a damaged header or data raises the package's own error type
            raise ConversionError(f'cannot read checkpoint {path}: {type(err).__name__}: {err}') from err
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        pass  # a non-tensor object: read it again, restricted
    except Exception as err:  # torch raises several types for truncated/foreign files
        raise ConversionError(f'cannot read checkpoint {path}: {type(err).__name__}: {err}') from err
    try:
        return restricted_load(path)
    except Exception as err:
        raise ConversionError(f'cannot read checkpoint {path} (neither weights-only nor with non-tensor objects '
                              f'left unbuilt): {type(err).__name__}: {err}') from err


def skipped_objects(checkpoint: Mapping) -> dict[str, str]:
    """Where `read_checkpoint` left an object unbuilt, and what it was: ``{'config': 'yacs.config.CfgNode'}``."""
    return dict(safe_load.skipped_objects(checkpoint))


def unwrap(checkpoint: Mapping) -> tuple[StateDict, str]:
    """The state_dict inside a checkpoint and the wrapper key it was under (``''`` for bare)."""
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f'checkpoint holds a {type(checkpoint).__name__}, not a dict of tensors')
    for wrapper in ('state_dict', 'model', 'module'):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
            return dict(inner), wrapper
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}
    if not tensors:
        skipped = skipped_objects(checkpoint)
        hint = (f'; the weights may be inside objects left unbuilt, as a class a file names is never '
                f'imported: {skipped}' if skipped else '')
        raise ConversionError(f'no state_dict found in checkpoint (top-level keys: {sorted(checkpoint)[:10]}){hint}')
    return tensors, ''


def strip_prefixes(state_dict: StateDict) -> tuple[StateDict, dict[str, str]]:
    """Removes ``module.`` (DDP) and keeps only ``backbone.*`` of a whole detector or segmentor."""
    dropped = {}
    if all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    if any(k.startswith('backbone.') for k in state_dict):
        dropped = {k: 'not part of the backbone' for k in state_dict if not k.startswith('backbone.')}
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
    return state_dict, dropped


# ---- converting ---------------------------------------------------------------------------------
def detect(state_dict: Mapping[str, Tensor], family: str | None = None) -> list[tuple[FamilyConverter, SourceFormat]]:
    """Every (family, source format) whose layout a prefix-stripped state_dict matches, in registration order.

    Several can match (GG-Transformer keeps Swin's key names and adds its own): the caller tries them in
    order and keeps the first that converts into a model without missing or unexpected keys.
    """
    candidates = [CONVERTERS[family]] if family else list(CONVERTERS.values())
    matches = [(c, fmt) for c in candidates for fmt in c.formats if fmt.detect(state_dict)]
    if matches:
        return matches
    if family:
        others = [c.family for c in CONVERTERS.values() if c.family != family and c.detect_format(state_dict)]
        seen = f'it looks like a {others[0]} checkpoint' if others else 'its keys match no known layout'
        raise ConversionError(f'checkpoint is not a {family} checkpoint: {seen} '
                              f'(first keys: {list(state_dict)[:3]})')
    raise ConversionError(f'checkpoint matches no known family/format (first keys: {list(state_dict)[:3]}); '
                          f'known families: {sorted(CONVERTERS)}')


def convert_state_dict(state_dict: StateDict, model: nn.Module | None = None,
                       model_name: str | None = None) -> tuple[StateDict, ConversionReport]:
    """Converts a raw state_dict for ``model`` (or a variant by name, or auto-detected).

    Raises `ConversionError` naming every missing, unexpected and mis-shaped key (for the first layout
    the checkpoint matches, when it matches several and fits none).
    """
    from . import family_of

    state_dict, dropped = strip_prefixes(state_dict)
    family = type(model).__name__ if model is not None else (family_of(model_name).__name__ if model_name else None)
    if family is not None and family not in CONVERTERS:
        raise ConversionError(f'no weight converter for {family}')
    errors = []
    for converter, fmt in detect(state_dict, family):
        try:
            return _convert(state_dict, dict(dropped), converter, fmt, model, model_name)
        except ConversionError as error:
            errors.append(error)
    raise errors[0]


def _convert(state_dict: StateDict, dropped: dict[str, str], converter: FamilyConverter, fmt: SourceFormat,
             model: nn.Module | None, model_name: str | None) -> tuple[StateDict, ConversionReport]:
    from . import create_backbone, family_of, list_models

    ours, fmt_dropped = fmt.to_ours(state_dict)
    dropped.update(fmt_dropped)

    model_given = model is not None  # else built here, with the arguments the layout implies
    if model is None:
        model_name = model_name or converter.guess_variant(ours)
        if model_name is None or model_name not in list_models():
            raise ConversionError(f'cannot tell which {converter.family} variant this checkpoint is; '
                                  f'pass --model (one of {[n for n in list_models() if family_of(n).__name__ == converter.family]})')
        with torch.device('meta'):  # shapes only: no memory, no init cost
            model = create_backbone(model_name, **fmt.model_kwargs)
    name = model_name or type(model).__name__
    target = {k: v.shape for k, v in model.state_dict().items()}

    report = ConversionReport(fmt.name, name, dropped=dropped, model_kwargs=dict(fmt.model_kwargs),
                              renamed=sum(1 for k in ours if k not in state_dict))
    missing = [k for k in target if k not in ours]
    report.new = [k for k in missing if any(re.fullmatch(p, k) for p in converter.new_keys)]
    missing = [k for k in missing if k not in report.new]
    unexpected = [k for k in ours if k not in target]
    misshaped = []
    for key in ours.keys() & target.keys():
        if ours[key].shape != target[key]:
            resized = converter.resizable(key, ours[key], target[key])
            if resized is None:
                misshaped.append(f'{key}: checkpoint {list(ours[key].shape)} vs model {list(target[key])}')
            else:
                report.resized[key] = (tuple(ours[key].shape), tuple(resized.shape))
                ours[key] = resized
    problems = [f'{label} ({len(keys)}): {_abbreviate(sorted(keys), 10)}'
                for label, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped))
                if keys]
    if problems and model_given and fmt.model_kwargs:
        args = ', '.join(f'{k}={v!r}' for k, v in fmt.model_kwargs.items())
        problems.append(f'(a checkpoint of this layout ({fmt.name}) loads into a backbone built with {args})')
    if problems:
        raise ConversionError(f'{fmt.name} checkpoint does not fit {name}:\n  ' + '\n  '.join(problems))
    return ours, report


def resize_relative_position_table(key: str, table: Tensor, shape: torch.Size) -> Tensor | None:
    """Bicubic resize of a square ``[(2w-1)^2, heads]`` relative-position table, as the official code.

    Returns ``None`` for any other key or shape change (which then is an error).
    """
    if not key.endswith('relative_position_bias_table') or table.dim() != 2 or len(shape) != 2 \
            or table.shape[1] != shape[1]:
        return None
    old, new = math.isqrt(table.shape[0]), math.isqrt(shape[0])
    if old * old != table.shape[0] or new * new != shape[0]:
        return None
    heads = table.shape[1]
    grid = table.float().permute(1, 0).reshape(1, heads, old, old)
    grid = F.interpolate(grid, size=(new, new), mode='bicubic', align_corners=False)
    return grid.reshape(heads, new * new).permute(1, 0).contiguous().to(table.dtype)


def rename(state_dict: StateDict, rules: list[tuple[str, str | Callable[[re.Match], str]]]) -> StateDict:
    """Applies regex substitutions (``re.sub`` replacements), in order, to every key."""
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def drop(state_dict: StateDict, rules: dict[str, str]) -> tuple[StateDict, dict[str, str]]:
    """Removes keys fully matching any regex of ``rules`` (regex -> reason)."""
    kept, dropped = {}, {}
    for key, value in state_dict.items():
        reason = next((r for p, r in rules.items() if re.fullmatch(p, key)), None)
        if reason is None:
            kept[key] = value
        else:
            dropped[key] = reason
    return kept, dropped


# ---- entry points -------------------------------------------------------------------------------
def convert_file(src: str, dst: str, model_name: str | None = None) -> ConversionReport:
    """Converts ``src`` into ``{'state_dict': ..., 'meta': ...}`` at ``dst``, written atomically."""
    checkpoint = read_checkpoint(src)
    raw, wrapper = unwrap(checkpoint)
    state_dict, report = convert_state_dict(raw, model_name=model_name)
    report.skipped = skipped_objects(checkpoint)
    meta = dict(source=os.path.abspath(src), model=report.model, format=report.source_format,
                wrapper=wrapper or 'bare', new_keys=report.new, model_kwargs=report.model_kwargs,
                skipped=report.skipped)
    save_atomically({'state_dict': state_dict, 'meta': meta}, dst)
    return report


def save_atomically(obj: object, dst: str) -> None:
    """``torch.save`` through `vt_backbones.fileio.atomic_output`: never a half-written file."""
    with atomic_output(dst) as tmp:
        torch.save(obj, tmp)


def load_pretrained(model: nn.Module, path: str) -> ConversionReport:
    """Loads any supported checkpoint into ``model`` (``init_cfg=dict(type='Pretrained')``).

    ``path`` may be a URL or an ``hf-hub:`` reference: `weights.fetch` downloads it (hash-checked where
    one is published) and the file is then read exactly as a local one.
    """
    from mmengine.logging import print_log

    from .weights import fetch

    checkpoint = read_checkpoint(fetch(path))
    raw, _ = unwrap(checkpoint)
    state_dict, report = convert_state_dict(raw, model=model)
    report.skipped = skipped_objects(checkpoint)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert sorted(missing) == sorted(report.new) and not unexpected, (missing, unexpected)
    print_log(f'loaded {path}\n{report.summary()}', logger='current')
    return report

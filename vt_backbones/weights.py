"""Where each variant's ImageNet weights come from, and getting them onto the disk verified.

`CATALOGUE` lists, for every variant, the weights its configs start from and their known sources in
order of preference: the official direct URL, timm's hub repository (the same weights re-saved as
``model.safetensors`` in timm's layout, which the converter reads), and, where no direct download
exists, the page a person downloads the file from. All facts are from the official READMEs (and timm's
``default_cfgs`` for the hub repositories); a hash is given only where one is published (CoaT's file
names carry the first 8 hex digits of the file's sha256).

`fetch` turns what a config names as ``init_cfg.checkpoint`` into a local file:

- ``https://...``: downloaded once into ``$TORCH_HOME/hub/checkpoints`` (the cache mmengine and
  torch.hub use), with a progress bar, to a temporary name that is renamed only after the published
  hash (if any) matched; a wrong hash is an error that leaves no file behind;
- ``hf-hub:ORG/REPO[/FILE]`` (FILE defaults to ``model.safetensors``): through ``huggingface_hub`` and its
  cache when it is installed (``HF_HUB_OFFLINE=1`` reads the cache only), else the file's public URL on
  the hub, downloaded like any URL;
- a local path: itself; when it is missing and the catalogue knows the file name, the error says which
  page to download it from, under which name to put it, and the command.

Importing this module registers ``hf-hub:`` as an mmengine ``CheckpointLoader`` scheme, so that
``load_from`` / ``tools/test.py CONFIG hf-hub:...`` read through the same path (and the restricted reader).
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

from .fileio import atomic_output

HUB_PREFIX = 'hf-hub:'
HUB_DEFAULT_FILE = 'model.safetensors'
DOWNLOAD_TIMEOUT_S = 60  # per socket operation (connect, each read), not for the whole file

SWIN_RELEASES = 'https://github.com/SwinTransformer/storage/releases/download'
COAT_FILES = 'https://vcl.ucsd.edu/coat/pretrained'
FOCAL_FILES = 'https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k'


class WeightsError(RuntimeError):
    """Weights that could not be fetched or verified, or are missing locally, with what to do."""


@dataclass(frozen=True)
class Source:
    """One place a variant's weights can be had.

    ``kind`` is ``'url'`` (a direct download), ``'hub'`` (``location`` is ``hf-hub:ORG/REPO``) or
    ``'page'`` (a page a person downloads ``file`` from by hand: Google Drive, Baidu). A direct source's
    ``location`` is what a config names as ``init_cfg.checkpoint``. ``layout`` is the
    converter's name of the file's key layout. ``sha256_prefix`` is the published hash, or its
    published prefix; ``None`` where nothing is published.
    """
    kind: str
    location: str
    file: str
    layout: str = 'official'
    sha256_prefix: str | None = None

    @property
    def direct(self) -> bool:
        return self.kind in ('url', 'hub')


@dataclass(frozen=True)
class Weights:
    """A variant's pretrained weights: what they are, the name the configs give the file, and sources."""
    variant: str
    pretrain: str
    local_name: str  # the file under checkpoints/ when placed by hand (the official name where there is one)
    sources: tuple[Source, ...]
    note: str = ''

    def first_direct(self) -> Source | None:
        return next((s for s in self.sources if s.direct), None)

    def pages(self) -> list[Source]:
        return [s for s in self.sources if s.kind == 'page']


def _hub(repo: str, layout: str) -> Source:
    return Source('hub', f'{HUB_PREFIX}timm/{repo}', HUB_DEFAULT_FILE, layout)


def _swin(variant: str, file: str, release: str, hub_repo: str, pretrain: str) -> Weights:
    return Weights(variant, pretrain, file, (
        Source('url', f'{SWIN_RELEASES}/{release}/{file}', file),
        _hub(hub_repo, 'timm'),
    ))


def _coat(variant: str, sha256_prefix: str) -> Weights:
    file = f'{variant}_{sha256_prefix}.pth'
    return Weights(variant, 'ImageNet-1K', file, (
        Source('url', f'{COAT_FILES}/{file}', file, sha256_prefix=sha256_prefix),
        _hub(f'{variant}.in1k', 'timm'),
    ))


def _twins(variant: str, file: str, hub_repo: str, drive_id: str) -> Weights:
    return Weights(variant, 'ImageNet-1K', file, (
        _hub(hub_repo, 'official'),  # timm keeps the official key names
        Source('page', f'https://drive.google.com/file/d/{drive_id}/view', file),
    ))


def _focal(variant: str, size: str) -> Weights:
    file = f'focal-{size}-is224-ws7.pth'
    return Weights(variant, 'ImageNet-1K', file, (Source('url', f'{FOCAL_FILES}/{file}', file),))


def _crossformer(variant: str, drive_id: str) -> Weights:
    file = f'{variant.replace("_", "-")}.pth'
    return Weights(variant, 'ImageNet-1K', file, (
        Source('page', f'https://drive.google.com/file/d/{drive_id}/view', file),
    ), note='also on BaiduCloud (links and keys in cheerss/CrossFormer README)')


def _shuffle(variant: str, folder_id: str) -> Weights:
    # The README links a Drive folder per model and names no file; the configs name the converted file.
    return Weights(variant, 'ImageNet-1K', f'{variant}_vtb.pth', (
        Source('page', f'https://drive.google.com/drive/folders/{folder_id}', 'the .pth file in the folder'),
    ))


CATALOGUE: dict[str, Weights] = {w.variant: w for w in (
    # microsoft/Swin-Transformer README (GitHub releases SwinTransformer/storage v1.0.0); timm swin_transformer.py.
    _swin('swin_t', 'swin_tiny_patch4_window7_224.pth', 'v1.0.0', 'swin_tiny_patch4_window7_224.ms_in1k',
          'ImageNet-1K'),
    _swin('swin_s', 'swin_small_patch4_window7_224.pth', 'v1.0.0', 'swin_small_patch4_window7_224.ms_in1k',
          'ImageNet-1K'),
    _swin('swin_b', 'swin_base_patch4_window7_224.pth', 'v1.0.0', 'swin_base_patch4_window7_224.ms_in1k',
          'ImageNet-1K'),
    _swin('swin_l', 'swin_large_patch4_window7_224_22k.pth', 'v1.0.0', 'swin_large_patch4_window7_224.ms_in22k',
          'ImageNet-22K'),
    # Meituan-AutoML/Twins README (Google Drive); timm twins.py.
    _twins('twins_pcpvt_s', 'pcpvt_small.pth', 'twins_pcpvt_small.in1k', '1TWIx_8M-4y6UOKtbCgm1v-UVQ-_lYe6X'),
    _twins('twins_pcpvt_b', 'pcpvt_base.pth', 'twins_pcpvt_base.in1k', '1BsD3ZRivvPsHoZB1AX-tbirFLtCln8ky'),
    _twins('twins_pcpvt_l', 'pcpvt_large.pth', 'twins_pcpvt_large.in1k', '17xZXOWEcSGs0quBmMEkBYCxjPRYH-L45'),
    _twins('twins_svt_s', 'alt_gvt_small.pth', 'twins_svt_small.in1k', '131SVOphM_-SaBytf4kWjo3ony5hpOt4S'),
    _twins('twins_svt_b', 'alt_gvt_base.pth', 'twins_svt_base.in1k', '1s83To8xgDWY6Ad8VBP3Nx9gqY709rrGu'),
    _twins('twins_svt_l', 'alt_gvt_large.pth', 'twins_svt_large.in1k', '1um39wxIaicmOquP2fr_SiZdxNCUou8w-'),
    # mulinmeng/Shuffle-Transformer README (Google Drive folders).
    _shuffle('shuffle_t', '1goDJtcnxgBAcHhZnNwrgOlG_WBftpmOS'),
    _shuffle('shuffle_s', '1GUBBQyDldY145vDiK-BHqivmpj3K6HK2'),
    _shuffle('shuffle_b', '1x0biaJRdN4nxLmp_3lQcA_6hO_sDBoUM'),
    # mlpc-ucsd/CoaT README (the SHA-256 column: first 8 hex digits); timm coat.py.
    _coat('coat_lite_tiny', 'e88e96b0'),
    _coat('coat_lite_mini', '6b4a8ae5'),
    _coat('coat_lite_small', '8d362f48'),
    _coat('coat_lite_medium', 'a750cd63'),
    _coat('coat_tiny', 'c6efc33c'),
    _coat('coat_mini', '40667eec'),
    _coat('coat_small', '7479cf9b'),
    # cheerss/CrossFormer README (Google Drive / BaiduCloud).
    _crossformer('crossformer_t', '1YSkU9enn-ITyrbxLH13zNcBYvWSEidfq'),
    _crossformer('crossformer_s', '1RAkigsgr33va0RZ85S2Shs2BhXYcS6U8'),
    _crossformer('crossformer_b', '1bK8biVCi17nz_nkt7rBfio_kywUpllSU'),
    _crossformer('crossformer_l', '1zRWByVW_KIZ87NgaBkDIm60DAsGJErdG'),
    # GG-Transformer: no official code or weights were released.
    Weights('gg_t', 'none published', 'gg_t_in1k.pth', (), note='no weights exist: train your own ImageNet-1K model'),
    Weights('gg_s', 'none published', 'gg_s_in1k.pth', (), note='no weights exist: train your own ImageNet-1K model'),
    # microsoft/Focal-Transformer README (blob storage).
    _focal('focal_t', 'tiny'),
    _focal('focal_s', 'small'),
    _focal('focal_b', 'base'),
)}


def by_local_name(name: str) -> Weights | None:
    """The catalogue entry whose weights the configs name ``checkpoints/<name>``."""
    return next((w for w in CATALOGUE.values() if w.local_name == name), None)


def by_url(url: str) -> Source | None:
    return next((s for w in CATALOGUE.values() for s in w.sources if s.kind == 'url' and s.location == url), None)


def how_to_get(weights: Weights, out_dir: str = 'checkpoints') -> str:
    """What a person does to put ``weights`` at ``out_dir/<local_name>`` when nothing can be downloaded."""
    target = os.path.join(out_dir, weights.local_name)
    direct = weights.first_direct()
    if direct is not None:
        return f'run: python tools/download_weights.py {weights.variant} --out {out_dir}'
    if not weights.sources:
        return f'{weights.note}, and save its checkpoint as {target}'
    lines = []
    for page in weights.pages():
        if page.file == weights.local_name:
            lines.append(f'download {page.file} from {page.location} and save it as {target}')
        else:
            lines.append(f'download {page.file} from {page.location}, then run: python tools/convert_weights.py '
                         f'DOWNLOADED.pth {target} --model {weights.variant}')
    if weights.note:
        lines.append(f'({weights.note})')
    return '\n  '.join(lines)


# ---- fetching -----------------------------------------------------------------------------------
def cache_dir() -> str:
    """Where URLs are downloaded to: torch.hub's checkpoint cache, shared with mmengine's URL loader."""
    import torch.hub
    return os.path.join(torch.hub.get_dir(), 'checkpoints')


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def hash_matches(path: str, sha256_prefix: str | None) -> bool:
    return sha256_prefix is None or sha256_of(path).startswith(sha256_prefix.lower())


def download(url: str, dst: str, sha256_prefix: str | None = None, progress: bool = True) -> str:
    """Downloads ``url`` to ``dst`` through a temporary file beside it, renamed once the hash matched.

    A ``dst`` already there whose hash matches (or with no hash to check) is kept, one whose hash does not
    is removed. Raises `WeightsError` for a network failure or a wrong hash; either way no file is left.
    """
    from tqdm import tqdm

    if os.path.isfile(dst):
        if hash_matches(dst, sha256_prefix):
            return dst
        os.unlink(dst)  # a damaged or foreign file under the published name: never used, fetched again
    with atomic_output(dst) as tmp:
        with open(tmp, 'wb') as out:
            try:
                request = urllib.request.Request(url, headers={'User-Agent': 'vt_backbones'})
                with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
                    total = int(response.headers.get('Content-Length') or 0) or None
                    with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024, disable=not progress,
                              desc=os.path.basename(dst), dynamic_ncols=True) as bar:
                        for chunk in iter(lambda: response.read(1 << 20), b''):
                            out.write(chunk)
                            bar.update(len(chunk))
                    if total is not None and out.tell() != total:
                        raise WeightsError(f'download of {url} stopped after {out.tell()} of {total} bytes')
            except OSError as err:  # URLError, HTTPError, timeouts, connection resets
                raise WeightsError(f'cannot download {url}: {err}') from err
        if not hash_matches(tmp, sha256_prefix):
            raise WeightsError(f'{url}: sha256 {sha256_of(tmp)} does not start with the published '
                               f'{sha256_prefix}; the file was not kept')
    return dst


def hub_download(reference: str, progress: bool = True) -> str:
    """``hf-hub:ORG/REPO[/FILE]`` -> a local file.

    With ``huggingface_hub`` installed (timm installs it): through it and its cache, shared with timm,
    with its tokens, mirrors (``HF_ENDPOINT``) and offline mode (``HF_HUB_OFFLINE=1``). Without it: the
    public file's ``resolve`` URL on ``$HF_ENDPOINT`` (default https://huggingface.co), downloaded once
    into `cache_dir` like any URL.
    """
    repo, file = split_hub_reference(reference)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        endpoint = os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')
        return download(f'{endpoint}/{repo}/resolve/main/{file}', os.path.join(cache_dir(), 'hf-hub', repo, file),
                        progress=progress)
    try:
        return hf_hub_download(repo, file)
    except Exception as err:  # the hub client raises its own types for offline, missing and network cases
        raise WeightsError(f'cannot fetch {reference}: {type(err).__name__}: {err}') from err


def split_hub_reference(reference: str) -> tuple[str, str]:
    """``hf-hub:timm/x.in1k`` -> ``('timm/x.in1k', 'model.safetensors')``; a third part names the file."""
    parts = reference[len(HUB_PREFIX):].split('/', 2)
    if not reference.startswith(HUB_PREFIX) or len(parts) < 2 or not all(parts):
        raise ValueError(f'checkpoint={reference!r}: expected {HUB_PREFIX}ORG/REPO or {HUB_PREFIX}ORG/REPO/FILE')
    return '/'.join(parts[:2]), parts[2] if len(parts) == 3 else HUB_DEFAULT_FILE


def url_download(url: str, progress: bool = True) -> str:
    """A URL's file in `cache_dir`, downloaded once; checked against the catalogue's hash where published."""
    source = by_url(url)
    dst = os.path.join(cache_dir(), os.path.basename(url.split('?', 1)[0]))
    return download(url, dst, source.sha256_prefix if source else None, progress=progress)


def fetch(checkpoint: str) -> str:
    """The local file for what a config names as its checkpoint (URL, ``hf-hub:`` reference or path).

    In a distributed run rank 0 downloads first while the others wait, as mmengine's URL loader does.
    """
    if not checkpoint.startswith((HUB_PREFIX, 'http://', 'https://')):
        return local_file(checkpoint)
    from mmengine.dist import barrier, get_dist_info

    get = hub_download if checkpoint.startswith(HUB_PREFIX) else url_download
    rank, world_size = get_dist_info()
    if world_size > 1 and rank > 0:
        barrier()
    try:
        return get(checkpoint, progress=rank == 0)
    finally:
        if world_size > 1 and rank == 0:
            barrier()


def local_file(path: str) -> str:
    """``path``; when it is missing and the catalogue knows the name, an error saying how to get the file."""
    weights = by_local_name(os.path.basename(path))
    if os.path.isfile(path) or weights is None:
        return path  # (the reader names a missing file that the catalogue does not know)
    out_dir = os.path.dirname(path) or '.'
    raise WeightsError(f'checkpoint file not found: {path} ({weights.variant} {weights.pretrain} weights); '
                       f'to put it in place, {how_to_get(weights, out_dir)}')


# ---- the catalogue as a table -------------------------------------------------------------------
def rows() -> Iterator[tuple[str, ...]]:
    """(variant, pretrain, source kind, layout, hash, location) for every source, in order of preference."""
    for weights in CATALOGUE.values():
        if not weights.sources:
            yield weights.variant, weights.pretrain, 'none', '-', '-', weights.note
        for source in weights.sources:
            yield (weights.variant, weights.pretrain, source.kind, source.layout,
                   f'sha256 {source.sha256_prefix}...' if source.sha256_prefix else 'not published',
                   source.location if source.direct else f'{source.location} ({source.file})')


# ---- mmengine ---------------------------------------------------------------------------------------
def _load_from_hub(filename: str, map_location: Any = None, logger: Any = None) -> Any:
    from .convert import read_checkpoint
    return read_checkpoint(hub_download(filename))


def register_checkpoint_schemes() -> None:
    """Registers ``hf-hub:`` with mmengine's ``CheckpointLoader`` (idempotent)."""
    from mmengine.runner import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes=HUB_PREFIX, loader=_load_from_hub, force=True)


__all__ = ['CATALOGUE', 'Source', 'Weights', 'WeightsError', 'download', 'fetch', 'how_to_get', 'rows',
           'register_checkpoint_schemes']

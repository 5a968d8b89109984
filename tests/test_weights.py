"""Pretrained weights out of the box (vt_backbones/weights.py, tools/download_weights.py) and whole trained models
(vt_backbones/whole_model.py), without the internet: a loopback HTTP server serves fake official files built from
../shared/reference/ckpt_keys, the hub is its client's offline cache laid out as the client lays it out."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import io
import os
import re
import sys
import threading
from dataclasses import replace
from typing import Iterator

import pytest
import torch

import vt_backbones
from vt_backbones import weights
from vt_backbones.convert import ConversionError, convert_file, convert_state_dict
from vt_backbones.weights import CATALOGUE, WeightsError

from conftest import ROOT, RunsCommand, load_tool
from test_convert import fake_official

SERVER_LIFETIME_S = 60  # the loopback server shuts itself down after this, whatever the test does
SERVER_MAX_REQUESTS = 20


# ---- a loopback server -------------------------------------------------------------------------------
class FileServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1; counts requests, refuses more than a bound."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        super().__init__(('127.0.0.1', 0), _Handler)

    def url(self, path: str) -> str:
        return f'http://127.0.0.1:{self.server_address[1]}{path}'


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None or len(self.server.requests) > SERVER_MAX_REQUESTS:
            self.send_error(404 if body is None else 429)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[FileServer]:
    server = FileServer(files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    stop = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
    thread.start()
    stop.start()
    try:
        yield server
    finally:
        stop.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """torch.hub's download cache in tmp_path (the configs' URLs land there)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


def with_url(variant: str, url: str, sha256_prefix: str | None) -> weights.Weights:
    """``variant``'s catalogue entry with its official URL moved to ``url`` (and the hash given)."""
    entry = CATALOGUE[variant]
    sources = tuple(replace(s, location=url, sha256_prefix=sha256_prefix) if s.kind == 'url' else s
                    for s in entry.sources)
    return replace(entry, sources=sources)


def files_under(directory) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), directory) for d, _, fs in os.walk(directory) for f in fs)


# ---- the catalogue ---------------------------------------------------------------------------------------
def test_catalogue_covers_every_variant_with_the_published_facts():
    assert sorted(CATALOGUE) == sorted(vt_backbones.list_models())
    for entry in CATALOGUE.values():
        for source in entry.sources:
            assert source.kind in ('url', 'hub', 'page') and source.location.startswith(('https://', 'hf-hub:timm/'))
    # CoaT's file names carry the first 8 hex digits of their sha256 (mlpc-ucsd/CoaT README).
    coat = [e for v, e in CATALOGUE.items() if v.startswith('coat')]
    assert len(coat) == 7
    for entry in coat:
        url = entry.first_direct()
        assert url.kind == 'url' and url.location.endswith(f'_{url.sha256_prefix}.pth') and len(url.sha256_prefix) == 8
    # No direct download: Shuffle and CrossFormer (Google Drive / Baidu), GG (nothing released).
    no_direct = sorted(v for v, e in CATALOGUE.items() if e.first_direct() is None)
    assert no_direct == sorted(['shuffle_t', 'shuffle_s', 'shuffle_b', 'crossformer_t', 'crossformer_s',
                                'crossformer_b', 'crossformer_l', 'gg_t', 'gg_s'])


def test_list_prints_every_source_with_its_hash(capsys):
    assert load_tool('download_weights').main(['--list']) == 0
    out = capsys.readouterr().out
    assert 'sha256 e88e96b0...' in out and 'hf-hub:timm/twins_svt_large.in1k' in out
    assert 'drive.google.com/drive/folders/1goDJtcnxgBAcHhZnNwrgOlG_WBftpmOS' in out
    assert len(out.splitlines()) == 1 + sum(max(1, len(e.sources)) for e in CATALOGUE.values())


# ---- download, hash check, conversion -------------------------------------------------------------------
def test_download_checks_the_hash_converts_and_keeps_a_valid_file(caches, tmp_path, monkeypatch, capsys):
    variant = 'coat_lite_mini'
    body = saved({'model': fake_official(variant), 'epoch': 300})
    path = f'/coat/pretrained/{CATALOGUE[variant].local_name}'
    with serve({path: body}) as server:
        monkeypatch.setitem(CATALOGUE, variant, with_url(variant, server.url(path),
                                                         hashlib.sha256(body).hexdigest()[:8]))
        tool = load_tool('download_weights')
        out = tmp_path / 'out'
        assert tool.main([variant, '--out', str(out)]) == 0
        converted = torch.load(out / f'{variant}_vtb.pth', weights_only=True)
        assert converted['meta']['model'] == variant and converted['meta']['format'] == 'official'
        expected, _ = convert_state_dict(fake_official(variant), model_name=variant)
        assert converted['state_dict'].keys() == expected.keys()
        assert all(torch.equal(converted['state_dict'][k], v) for k, v in expected.items())
        assert files_under(caches) == [CATALOGUE[variant].local_name]  # the raw download, in torch.hub's cache
        assert (caches / CATALOGUE[variant].local_name).read_bytes() == body

        assert tool.main([variant, '--out', str(out)]) == 0
        assert len(server.requests) == 1  # the second run kept the converted file: no request
    assert 'already there and complete' in capsys.readouterr().out


def test_wrong_hash_is_an_error_and_leaves_nothing(caches, tmp_path, monkeypatch, capsys):
    variant = 'coat_tiny'
    body = saved({'model': fake_official(variant)})
    path = f'/coat/pretrained/{CATALOGUE[variant].local_name}'
    with serve({path: body}) as server:
        wrong = 'ffffffff' if not hashlib.sha256(body).hexdigest().startswith('f') else '00000000'
        monkeypatch.setitem(CATALOGUE, variant, with_url(variant, server.url(path), wrong))
        # The hub is the second source: make it fail too, offline, so that nothing at all can be fetched.
        monkeypatch.setattr(weights, 'hub_download', lambda ref, **_: (_ for _ in ()).throw(WeightsError(f'{ref}: offline')))
        caches.mkdir(parents=True)
        (caches / CATALOGUE[variant].local_name).write_bytes(b'a stale, damaged download')  # removed, not used
        out = tmp_path / 'out'
        assert load_tool('download_weights').main([variant, '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert f'does not start with the published {wrong}' in err and 'the file was not kept' in err
    assert files_under(caches) == [] and files_under(out) == []


def test_download_falls_back_to_the_hub_and_lists_what_needs_a_manual_download(caches, tmp_path, monkeypatch,
                                                                             capsys):
    variant = 'swin_t'
    hub_file = tmp_path / 'model.safetensors'
    save_safetensors(timm_swin(fake_official(variant)), hub_file)
    monkeypatch.setitem(CATALOGUE, variant, with_url(variant, 'http://127.0.0.1:9/unreachable.pth', None))
    monkeypatch.setattr(weights, 'hub_download', lambda ref, **_: str(hub_file))
    out = tmp_path / 'out'
    assert load_tool('download_weights').main([variant, 'crossformer_t', 'gg_s', '--out', str(out)]) == 0
    captured = capsys.readouterr()
    assert torch.load(out / 'swin_t_vtb.pth', weights_only=True)['meta']['format'] == 'timm'
    assert '(failed first: http://127.0.0.1:9/unreachable.pth: cannot download' in captured.out
    assert ('download crossformer-t.pth from https://drive.google.com/file/d/1YSkU9enn-ITyrbxLH13zNcBYvWSEidfq/view '
            f'and save it as {out}/crossformer-t.pth') in captured.err
    assert 'gg_s:\n  no weights exist' in captured.err
    assert files_under(out) == ['swin_t_vtb.pth']


# ---- configs that fetch -------------------------------------------------------------------------------------
def test_config_init_cfg_url_downloads_and_converts_with_the_restricted_reader(caches, tmp_path):
    """The config's own URL path, served on loopback; the file also holds an object whose unpickling would run a
    command (mmengine's URL loader, used before, unpickles everything): the weights load, the command never runs."""
    from mmengine.config import Config

    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'maskrcnn_swin_t.py'))
    url = cfg.model.backbone.init_cfg.checkpoint
    path = re.sub(r'^https://[^/]+', '', url)
    source = fake_official('swin_t', seed=5)
    marker = tmp_path / 'ran'
    body = saved({'model': source, 'args': argparse.Namespace(lr=1e-3), 'config': RunsCommand(marker)})
    with serve({path: body}) as server:
        cfg.model.backbone.init_cfg.checkpoint = server.url(path)
        backbone_cfg = {k: v for k, v in cfg.model.backbone.items() if k != 'type'}
        model = vt_backbones.SwinTransformer(**backbone_cfg)
        model.init_weights()
    state = model.state_dict()
    loaded = [k for k in source if k in state]
    assert len(loaded) > 100 and all(torch.equal(state[k], source[k]) for k in loaded)
    assert files_under(caches) == [os.path.basename(path)]
    assert not marker.exists()


@pytest.mark.parametrize('variant, hint', [
    ('shuffle_t', 'download the .pth file in the folder from https://drive.google.com/drive/folders/'
                  '1goDJtcnxgBAcHhZnNwrgOlG_WBftpmOS, then run: python tools/convert_weights.py DOWNLOADED.pth '
                  'checkpoints/shuffle_t_vtb.pth --model shuffle_t'),
    ('crossformer_s', 'download crossformer-s.pth from https://drive.google.com/file/d/'
                      '1RAkigsgr33va0RZ85S2Shs2BhXYcS6U8/view and save it as checkpoints/crossformer-s.pth'),
])
def test_missing_file_without_direct_source_stops_with_page_file_and_command(variant, hint, tmp_path, monkeypatch):
    from mmengine.config import Config

    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', f'maskrcnn_{variant}.py'))
    model = vt_backbones.create_backbone(variant, init_cfg=cfg.model.backbone.init_cfg)
    with pytest.raises(WeightsError) as error:
        model.init_weights()
    assert hint in str(error.value)


# ---- the hub, .safetensors ----------------------------------------------------------------------------------
def timm_swin(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's Swin layout (merging at the start of the next stage, head.fc, no index buffers) of official keys."""
    out = {}
    for key, value in official.items():
        if key.endswith(('relative_position_index', 'attn_mask')):
            continue
        m = re.match(r'layers\.(\d)\.downsample\.(.*)', key)
        out[f'layers.{int(m[1]) + 1}.downsample.{m[2]}' if m else key.replace('head.', 'head.fc.')] = value
    return out


def save_safetensors(state_dict: dict[str, torch.Tensor], path_or_buffer) -> None:
    from safetensors.torch import save
    data = save({k: v.contiguous() for k, v in state_dict.items()})
    if isinstance(path_or_buffer, io.BytesIO):
        path_or_buffer.write(data)
    else:
        with open(path_or_buffer, 'wb') as f:
            f.write(data)


def test_safetensors_file_converts_like_the_official_pth(tmp_path):
    pytest.importorskip('safetensors')
    official = fake_official('swin_t', seed=2)
    save_safetensors(timm_swin(official), tmp_path / 'model.safetensors')
    report = convert_file(str(tmp_path / 'model.safetensors'), str(tmp_path / 'out.pth'))
    assert report.model == 'swin_t' and report.source_format == 'timm'
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)['state_dict']
    expected, _ = convert_state_dict(official)
    assert converted.keys() == expected.keys() and all(torch.equal(converted[k], expected[k]) for k in expected)
    (tmp_path / 'broken.safetensors').write_bytes((tmp_path / 'model.safetensors').read_bytes()[:1000])
    with pytest.raises(ConversionError, match='cannot read checkpoint .*broken.safetensors'):
        convert_file(str(tmp_path / 'broken.safetensors'), str(tmp_path / 'never.pth'))
    assert not (tmp_path / 'never.pth').exists()


def hub_cache(root, repo: str, state_dict: dict[str, torch.Tensor]) -> None:
    """huggingface_hub's cache for ``repo``: blobs by sha256, a snapshot per commit linking to them, refs/main."""
    folder = root / f'models--{repo.replace("/", "--")}'
    blob = folder / 'blobs' / 'staging'
    blob.parent.mkdir(parents=True)
    save_safetensors(state_dict, blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    blob = blob.rename(folder / 'blobs' / digest)
    commit = '0123456789abcdef0123456789abcdef01234567'
    snapshot = folder / 'snapshots' / commit
    snapshot.mkdir(parents=True)
    (snapshot / 'model.safetensors').symlink_to(os.path.relpath(blob, snapshot))
    (folder / 'refs').mkdir()
    (folder / 'refs' / 'main').write_text(commit)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    constants = pytest.importorskip('huggingface_hub.constants')
    pytest.importorskip('safetensors')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(constants, 'ENDPOINT', 'http://127.0.0.1:9')  # never reached: offline
    return tmp_path / 'hub'


def test_config_hub_reference_loads_from_the_offline_cache(offline_hub):
    from mmengine.config import Config
    from mmengine.runner import CheckpointLoader

    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'upernet_twins_pcpvt_s.py'))
    reference = cfg.model.backbone.init_cfg.checkpoint
    assert reference == 'hf-hub:timm/twins_pcpvt_small.in1k'
    source = fake_official('twins_pcpvt_s', seed=4)  # timm keeps the official names for Twins
    hub_cache(offline_hub, 'timm/twins_pcpvt_small.in1k', source)

    model = vt_backbones.create_backbone('twins_pcpvt_s', init_cfg=cfg.model.backbone.init_cfg)
    model.init_weights()
    state = model.state_dict()
    loaded = [k for k in source if k in state]
    assert len(loaded) > 100 and all(torch.equal(state[k], source[k]) for k in loaded)
    # The same reference through mmengine's CheckpointLoader (load_from, tools/test.py): our scheme.
    checkpoint = CheckpointLoader.load_checkpoint(reference)
    assert checkpoint.keys() == source.keys()
    with pytest.raises(WeightsError, match='cannot fetch hf-hub:timm/twins_svt_small.in1k'):
        CheckpointLoader.load_checkpoint('hf-hub:timm/twins_svt_small.in1k')  # not in the cache, offline


def test_hub_reference_without_the_hub_client_downloads_the_public_file(caches, monkeypatch):
    pytest.importorskip('safetensors')
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # not installed: `import` raises ImportError
    source = fake_official('twins_svt_s', seed=6)
    buffer = io.BytesIO()
    save_safetensors(source, buffer)
    with serve({'/timm/twins_svt_small.in1k/resolve/main/model.safetensors': buffer.getvalue()}) as server:
        monkeypatch.setenv('HF_ENDPOINT', server.url(''))
        model = vt_backbones.create_backbone(
            'twins_svt_s', init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_svt_small.in1k'))
        model.init_weights()
    state = model.state_dict()
    loaded = [k for k in source if k in state]
    assert len(loaded) > 100 and all(torch.equal(state[k], source[k]) for k in loaded)
    assert files_under(caches) == ['hf-hub/timm/twins_svt_small.in1k/model.safetensors']


# ---- whole trained models ------------------------------------------------------------------------------------
# Mask R-CNN (FPN) of the official Swin detection code (SwinTransformer/Swin-Transformer-Object-Detection, mmdet
# 2.11: configs/_base_/models/mask_rcnn_swin_fpn.py; mmdet/models/necks/fpn.py, dense_heads/rpn_head.py,
# roi_heads/bbox_heads/convfc_bbox_head.py + bbox_head.py, roi_heads/mask_heads/fcn_mask_head.py): its neck and
# head tensors by name and shape, and its dense Swin's output norms norm0..3.
def mmdet2_mask_rcnn_heads(in_channels: list[int], num_classes: int = 80) -> dict[str, list[int]]:
    shapes = {}
    for i, c in enumerate(in_channels):
        shapes |= {f'neck.lateral_convs.{i}.conv.weight': [256, c, 1, 1], f'neck.lateral_convs.{i}.conv.bias': [256],
                   f'neck.fpn_convs.{i}.conv.weight': [256, 256, 3, 3], f'neck.fpn_convs.{i}.conv.bias': [256]}
    for name, out, k in (('rpn_conv', 256, 3), ('rpn_cls', 3, 1), ('rpn_reg', 12, 1)):  # 3 anchors, sigmoid
        shapes |= {f'rpn_head.{name}.weight': [out, 256, k, k], f'rpn_head.{name}.bias': [out]}
    for name, out, inp in (('shared_fcs.0', 1024, 256 * 7 * 7), ('shared_fcs.1', 1024, 1024),
                           ('fc_cls', num_classes + 1, 1024), ('fc_reg', 4 * num_classes, 1024)):
        shapes |= {f'roi_head.bbox_head.{name}.weight': [out, inp], f'roi_head.bbox_head.{name}.bias': [out]}
    for i in range(4):
        shapes |= {f'roi_head.mask_head.convs.{i}.conv.weight': [256, 256, 3, 3],
                   f'roi_head.mask_head.convs.{i}.conv.bias': [256]}
    shapes |= {'roi_head.mask_head.upsample.weight': [256, 256, 2, 2], 'roi_head.mask_head.upsample.bias': [256],
               'roi_head.mask_head.conv_logits.weight': [num_classes, 256, 1, 1],
               'roi_head.mask_head.conv_logits.bias': [num_classes]}
    for i, c in enumerate(in_channels):
        shapes |= {f'backbone.norm{i}.weight': [c], f'backbone.norm{i}.bias': [c]}
    return shapes


def fake_mmdet2_swin_t_mask_rcnn(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    backbone = {f'backbone.{k}': v for k, v in fake_official('swin_t', seed).items()
                if not k.startswith(('head.', 'norm.'))}  # the dense backbone has no classifier or final norm
    rest = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in mmdet2_mask_rcnn_heads([96, 192, 384, 768]).items()}
    return {**backbone, **rest}


def built(config: str = 'maskrcnn_swin_t.py') -> torch.nn.Module:
    from vt_backbones.whole_model import build_model
    return build_model(os.path.join(ROOT, 'configs', config)).eval()


@pytest.mark.slow
def test_whole_mmdet2_mask_rcnn_loads_strictly_and_predicts_as_loaded_directly(tmp_path):
    from mmdet.structures import DetDataSample
    from mmengine.runner import load_checkpoint

    state_dict = fake_mmdet2_swin_t_mask_rcnn()
    src, dst = tmp_path / 'mask_rcnn_swin_tiny_patch4_window7_1x.pth', tmp_path / 'converted.pth'
    torch.save({'meta': {'CLASSES': tuple(f'class{i}' for i in range(80)), 'epoch': 12}, 'state_dict': state_dict},
               src)
    tool = load_tool('convert_weights')
    assert tool.main(['--whole-model', str(src), str(dst)]) == 0  # config found from the checkpoint: ours for swin_t

    ours = built()
    load_checkpoint(ours, str(dst), strict=True)
    assert torch.load(dst, weights_only=True)['meta']['dataset_meta']['classes'][:2] == ('class0', 'class1')

    direct = built()  # the same weights, put in place by hand: backbone converted, the rest by name
    backbone, _ = convert_state_dict({k[len('backbone.'):]: v for k, v in state_dict.items()
                                      if k.startswith('backbone.')}, model=direct.backbone)
    direct.backbone.load_state_dict(backbone, strict=True)
    missing, unexpected = direct.load_state_dict({k: v for k, v in state_dict.items()
                                                  if not k.startswith('backbone.')}, strict=False)
    assert not unexpected and all(k.startswith('backbone.') for k in missing)

    image = torch.randint(0, 256, (3, 96, 128), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    meta = dict(img_shape=(96, 128), ori_shape=(96, 128), scale_factor=(1.0, 1.0), batch_input_shape=(96, 128))

    def predict(model):
        data = model.data_preprocessor({'inputs': [image], 'data_samples': [DetDataSample(metainfo=meta)]})
        with torch.no_grad():
            features = model.extract_feat(data['inputs'])
            return features, model.predict(data['inputs'], data['data_samples'])[0].pred_instances

    (ours_features, ours_pred), (direct_features, direct_pred) = predict(ours), predict(direct)
    for a, b in zip(ours_features, direct_features):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(ours_pred.bboxes, direct_pred.bboxes, rtol=0, atol=0)
    torch.testing.assert_close(ours_pred.scores, direct_pred.scores, rtol=0, atol=0)


def test_whole_model_names_what_does_not_fit_and_writes_nothing(tmp_path, capsys):
    state_dict = fake_mmdet2_swin_t_mask_rcnn()
    state_dict['roi_head.bbox_head.fc_extra.weight'] = torch.zeros(3)
    del state_dict['rpn_head.rpn_reg.bias']
    state_dict['roi_head.bbox_head.fc_cls.weight'] = torch.zeros(11, 1024)  # another number of classes
    torch.save({'state_dict': state_dict}, tmp_path / 'src.pth')
    tool = load_tool('convert_weights')
    config = os.path.join(ROOT, 'configs', 'maskrcnn_swin_t.py')
    assert tool.main(['--whole-model', str(tmp_path / 'src.pth'), str(tmp_path / 'dst.pth'), '--config', config]) == 1
    err = capsys.readouterr().err
    assert 'missing (1): rpn_head.rpn_reg.bias' in err and 'unexpected (1): roi_head.bbox_head.fc_extra.weight' in err
    assert 'roi_head.bbox_head.fc_cls.weight: checkpoint [11, 1024] vs model [81, 1024]' in err
    assert files_under(tmp_path) == ['src.pth']
    torch.save({'model': fake_official('swin_t')}, tmp_path / 'imagenet.pth')
    assert tool.main(['--whole-model', str(tmp_path / 'imagenet.pth'), str(tmp_path / 'dst.pth')]) == 1
    assert 'not a whole detector or segmentor' in capsys.readouterr().err


# Cascade Mask R-CNN of the same code (configs/_base_/models/cascade_mask_rcnn_swin_fpn.py + the _giou_4conv1f_
# configs; mmdet 2.11 roi_heads/cascade_roi_head.py builds one bbox and one mask head per stage): per stage 4 shared
# ConvModules with SyncBN (no conv bias; the norm is named ``bn``) + 1 fc, class-specific regression.
def mmdet2_cascade_heads(num_classes: int = 80) -> dict[str, list[int]]:
    single = mmdet2_mask_rcnn_heads([96, 192, 384, 768], num_classes)
    shapes = {k: v for k, v in single.items() if not k.startswith('roi_head.')}
    for stage in range(3):
        bbox, mask = f'roi_head.bbox_head.{stage}', f'roi_head.mask_head.{stage}'
        for i in range(4):
            shapes[f'{bbox}.shared_convs.{i}.conv.weight'] = [256, 256, 3, 3]
            shapes |= {f'{bbox}.shared_convs.{i}.bn.{n}': [256] for n in ('weight', 'bias', 'running_mean', 'running_var')}
            shapes[f'{bbox}.shared_convs.{i}.bn.num_batches_tracked'] = []
        for name, out, inp in (('shared_fcs.0', 1024, 256 * 7 * 7), ('fc_cls', num_classes + 1, 1024),
                               ('fc_reg', 4 * num_classes, 1024)):
            shapes |= {f'{bbox}.{name}.weight': [out, inp], f'{bbox}.{name}.bias': [out]}
        shapes |= {k.replace('roi_head.mask_head.', f'{mask}.'): v for k, v in single.items()
                   if k.startswith('roi_head.mask_head.')}
    return shapes


@pytest.mark.slow
def test_whole_mmdet2_cascade_mask_rcnn_fits_our_cascade_config(tmp_path):
    g = torch.Generator().manual_seed(0)
    backbone = {f'backbone.{k}': v for k, v in fake_official('swin_t').items() if not k.startswith(('head.', 'norm.'))}
    heads = {k: (torch.randn(shape, generator=g) if shape else torch.tensor(7)) for k, shape in mmdet2_cascade_heads().items()}
    torch.save({'state_dict': {**backbone, **heads}}, tmp_path / 'cascade.pth')
    assert load_tool('convert_weights').main(['--whole-model', str(tmp_path / 'cascade.pth'),
                                              str(tmp_path / 'out.pth')]) == 0  # cascade_maskrcnn_swin_t.py
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert converted['meta']['config'].endswith('cascade_maskrcnn_swin_t.py')
    from mmengine.runner import load_checkpoint
    load_checkpoint(built('cascade_maskrcnn_swin_t.py'), str(tmp_path / 'out.pth'), strict=True)


# UperNet of the official Swin segmentation code (SwinTransformer/Swin-Transformer-Semantic-Segmentation, mmseg 0.11:
# configs/_base_/models/upernet_swin.py; mmseg/models/decode_heads/uper_head.py, psp_head.py (PPM), fcn_head.py,
# decode_head.py): ConvModules with SyncBN (no conv bias, norm ``bn``), PPM entries Sequential(pool, ConvModule).
def mmseg0_upernet_heads(in_channels: list[int], num_classes: int = 150, channels: int = 512) -> dict[str, list[int]]:
    def conv_module(name: str, out: int, inp: int, k: int) -> dict[str, list[int]]:
        bn = {f'{name}.bn.{n}': [out] for n in ('weight', 'bias', 'running_mean', 'running_var')}
        return {f'{name}.conv.weight': [out, inp, k, k], **bn, f'{name}.bn.num_batches_tracked': []}

    shapes = {}
    for j in range(4):  # pool scales (1, 2, 3, 6)
        shapes |= conv_module(f'decode_head.psp_modules.{j}.1', channels, in_channels[-1], 1)
    shapes |= conv_module('decode_head.bottleneck', channels, in_channels[-1] + 4 * channels, 3)
    for i, c in enumerate(in_channels[:-1]):
        shapes |= conv_module(f'decode_head.lateral_convs.{i}', channels, c, 1)
        shapes |= conv_module(f'decode_head.fpn_convs.{i}', channels, channels, 3)
    shapes |= conv_module('decode_head.fpn_bottleneck', channels, len(in_channels) * channels, 3)
    shapes |= {'decode_head.conv_seg.weight': [num_classes, channels, 1, 1], 'decode_head.conv_seg.bias': [num_classes]}
    shapes |= conv_module('auxiliary_head.convs.0', 256, in_channels[2], 3)
    shapes |= {'auxiliary_head.conv_seg.weight': [num_classes, 256, 1, 1], 'auxiliary_head.conv_seg.bias': [num_classes]}
    for i, c in enumerate(in_channels):
        shapes |= {f'backbone.norm{i}.weight': [c], f'backbone.norm{i}.bias': [c]}
    return shapes


@pytest.mark.slow
def test_whole_mmseg0_upernet_fits_our_upernet_config(tmp_path):
    g = torch.Generator().manual_seed(0)
    backbone = {f'backbone.{k}': v for k, v in fake_official('swin_t').items() if not k.startswith(('head.', 'norm.'))}
    heads = {k: (torch.randn(shape, generator=g) if shape else torch.tensor(7))
             for k, shape in mmseg0_upernet_heads([96, 192, 384, 768]).items()}
    torch.save({'meta': {'CLASSES': ('wall', 'building')}, 'state_dict': {**backbone, **heads}}, tmp_path / 'upernet.pth')
    assert load_tool('convert_weights').main(['--whole-model', str(tmp_path / 'upernet.pth'),
                                              str(tmp_path / 'out.pth')]) == 0  # upernet_swin_t.py
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert converted['meta']['config'].endswith('upernet_swin_t.py')
    from mmengine.runner import load_checkpoint
    model = built('upernet_swin_t.py')
    load_checkpoint(model, str(tmp_path / 'out.pth'), strict=True)
    assert torch.equal(model.decode_head.conv_seg.weight, heads['decode_head.conv_seg.weight'])

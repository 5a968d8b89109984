# UperNet Twins-PCPVT-S ADE20K 512x512 160k; source: the official UperNet config, Meituan-AutoML/Twins segmentation/configs/upernet_*_512x512_160k_ade20k_swin_setting.py (values as ported to mmseg 1.x configs/twins/twins_pcpvt-s_uperhead_8xb4-160k_ade20k-512x512.py)
# AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except the PEGs (pos_block) and norms; poly (power 1.0, min lr
# 0) after a 1500-iteration linear warm-up from 1e-6; drop path 0.2; 16 images per iteration (8 GPUs x 2, the global
# batch of the official README; mmseg's port of this one config uses 8 x 4).
# Pretrained: timm's copy of the official ImageNet-1K pcpvt_small.pth (the official file is on Google Drive only),
# fetched from the hub (vt_backbones/weights.py) and converted on load.
# Precision: fp32, as the official UperNet configs (no fp16 in their runtime or optimizer config).
_base_ = [
    './_base_/models/upernet.py',
    './_base_/datasets/ade20k.py',
    './_base_/schedules/schedule_160k.py',
    './_base_/default_runtime_seg.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.PCPVT',
        arch='small',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_small.in1k')),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'pos_block': dict(decay_mult=0.0), 'norm': dict(decay_mult=0.0)}))

# UperNet CrossFormer-S ADE20K 512x512 160k; source: cheerss/CrossFormer segmentation/configs/upernet_crossformer_s_ade20k.py (+ segmentation/crossformer_factory.py CrossFormer_S)
# Swin's ADE20K pipeline (the official ade20k_swin.py); AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 except
# norms; poly (power 1.0, min lr 0) after a 1500-iteration linear warm-up from 1e-6; drop path 0.2 (set by the
# official backbone wrapper); 16 images per iteration (8 GPUs x 2). Pretrained: crossformer-s.pth, converted on load.
# Precision: fp32, as the official configs (optimizer_config without fp16; no AMP in the dense code).
_base_ = [
    './_base_/models/upernet.py',
    './_base_/datasets/ade20k.py',
    './_base_/schedules/schedule_160k.py',
    './_base_/default_runtime_seg.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.CrossFormer',
        arch='small',
        group_size=7,
        intervals=(8, 4, 2, 1),
        lda_mode='fixed_interval',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/crossformer-s.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))

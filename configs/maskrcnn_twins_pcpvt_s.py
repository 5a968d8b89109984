# Mask R-CNN Twins-PCPVT-S COCO 1x, the official "PVT setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_pcpvt_s_fpn_1x_coco_pvt_setting.py
# Single scale 1333x800 + flip; AdamW lr 2e-4, betas (0.9, 0.999), weight decay 1e-4 on every parameter; 12 epochs
# (steps 8, 11); 16 images per iteration (8 GPUs x 2); drop path 0.2 (what the official backbone always uses: its
# wrapper ignores the config's arguments). Warm-up: 500 iterations, as the official mmdet 2.x base.
# Pretrained: timm's copy of the official ImageNet-1K pcpvt_small.pth (the official file is on Google Drive only),
# fetched from the hub (vt_backbones/weights.py) and converted on load.
# Precision: fp32, as the official PVT-setting configs (fp16 is commented out in their default_runtime.py).
_base_ = [
    './_base_/models/mask_rcnn_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/schedule_1x.py',
    './_base_/default_runtime_det.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='vt_backbones.PCPVT',
        arch='small',
        drop_path_rate=0.2,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_small.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))

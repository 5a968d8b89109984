# Mask R-CNN Twins-PCPVT-B COCO 1x, the official "PVT setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_pcpvt_b_fpn_1x_coco_pvt_setting.py
# As the PCPVT-S config (same optimizer, schedule, drop path 0.2) with the PCPVT-B backbone and pcpvt_base.pth.
# Precision: fp32, as the official PVT-setting configs (fp16 is commented out in their default_runtime.py).
_base_ = './maskrcnn_twins_pcpvt_s.py'

model = dict(
    backbone=dict(
        type='vt_backbones.PCPVT',
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_base.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))

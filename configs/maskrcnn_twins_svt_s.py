# Mask R-CNN Twins-SVT-S COCO 1x, the official "PVT setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_alt_gvt_s_fpn_1x_coco_pvt_setting.py
# As the PCPVT-S config (same optimizer, schedule, drop path 0.2) with the SVT-S backbone (alt_gvt_small) and alt_gvt_small.pth.
# Precision: fp32, as the official PVT-setting configs (fp16 is commented out in their default_runtime.py).
_base_ = './maskrcnn_twins_pcpvt_s.py'

model = dict(
    backbone=dict(
        type='vt_backbones.SVT',
        arch='small',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_svt_small.in1k')),
    neck=dict(in_channels=[64, 128, 256, 512]))

# Mask R-CNN Twins-SVT-L COCO 1x, the official "PVT setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_alt_gvt_l_fpn_1x_coco_pvt_setting.py
# As the PCPVT-S config (same optimizer, schedule, drop path 0.2) with the SVT-L backbone (alt_gvt_large) and alt_gvt_large.pth.
# Precision: fp32, as the official PVT-setting configs (fp16 is commented out in their default_runtime.py).
_base_ = './maskrcnn_twins_pcpvt_s.py'

model = dict(
    backbone=dict(
        type='vt_backbones.SVT',
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_svt_large.in1k')),
    neck=dict(in_channels=[128, 256, 512, 1024]))

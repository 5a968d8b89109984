# Mask R-CNN Twins-PCPVT-B COCO 3x, the official "Swin setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_pcpvt_b_fpn_3x_coco_swin_setting.py
# As the PCPVT-S 3x config (same augmentation, optimizer, schedule, drop path 0.2) with the PCPVT-B backbone and pcpvt_base.pth.
# Precision: fp16 AMP with a static loss scale of 512, inherited (the official Swin-setting configs inherit
# PCPVT-S's fp16 = dict(loss_scale=512.)).
_base_ = './maskrcnn_twins_pcpvt_s_3x.py'

model = dict(
    backbone=dict(
        type='vt_backbones.PCPVT',
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_base.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))

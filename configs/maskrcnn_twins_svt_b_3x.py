# Mask R-CNN Twins-SVT-B COCO 3x, the official "Swin setting"; source: Meituan-AutoML/Twins detection/configs/mask_rcnn_alt_gvt_b_fpn_3x_coco_swin_setting.py
# As the PCPVT-S 3x config (same augmentation, optimizer, schedule, drop path 0.2) with the SVT-B backbone (alt_gvt_base) and alt_gvt_base.pth.
# Precision: fp16 AMP with a static loss scale of 512, inherited (the official Swin-setting configs inherit
# PCPVT-S's fp16 = dict(loss_scale=512.)).
_base_ = './maskrcnn_twins_pcpvt_s_3x.py'

model = dict(
    backbone=dict(
        type='vt_backbones.SVT',
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_svt_base.in1k')),
    neck=dict(in_channels=[96, 192, 384, 768]))

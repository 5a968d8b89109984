# Mask R-CNN Twins-PCPVT-L COCO 3x, the official "Swin setting" of the other Twins models; source: source: Meituan-AutoML/Twins detection/configs/mask_rcnn_pcpvt_b_fpn_3x_coco_swin_setting.py (the official repo has no PCPVT-L 3x config)
# As the PCPVT-S/B 3x configs (same augmentation, optimizer, schedule, drop path 0.2) with the PCPVT-L backbone and pcpvt_large.pth.
# Precision: fp16 AMP with a static loss scale of 512, inherited (the official Swin-setting configs inherit
# PCPVT-S's fp16 = dict(loss_scale=512.)).
_base_ = './maskrcnn_twins_pcpvt_s_3x.py'

model = dict(
    backbone=dict(
        type='vt_backbones.PCPVT',
        arch='large',
        init_cfg=dict(type='Pretrained', checkpoint='hf-hub:timm/twins_pcpvt_large.in1k')),
    neck=dict(in_channels=[64, 128, 320, 512]))

# Mask R-CNN GG-S COCO 1x: Swin-S's recipe (./maskrcnn_swin_s.py, from SwinTransformer/Swin-Transformer-Object-Detection), as the GG paper (arXiv 2106.02277) follows Swin's detection settings.
# As the GG-T 1x config with the GG-S backbone and drop path 0.2. No official weights exist: checkpoints/gg_s_in1k.pth
# must be your own ImageNet-1K GG-S (see maskrcnn_gg_t.py).
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the GG authors published no detection recipe of their own.
_base_ = './maskrcnn_gg_t.py'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/gg_s_in1k.pth')),
    neck=dict(in_channels=[96, 192, 384, 768]))

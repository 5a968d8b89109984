# Mask R-CNN GG-S COCO 3x: Swin-S's 3x recipe (./maskrcnn_swin_s_3x.py, from SwinTransformer/Swin-Transformer-Object-Detection), as the GG paper (arXiv 2106.02277) follows Swin's detection settings.
# As the GG-S 1x config (same drop path 0.2) but 36 epochs (steps 27, 33).
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the GG authors published no detection recipe of their own.
_base_ = './maskrcnn_gg_s.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# Mask R-CNN GG-T COCO 3x: Swin-T's 3x recipe (./maskrcnn_swin_t_3x.py, from SwinTransformer/Swin-Transformer-Object-Detection), as the GG paper (arXiv 2106.02277) follows Swin's detection settings.
# As the GG-T 1x config (optimizer, multi-scale + crop, 16 images per iteration, own ImageNet file) but 36 epochs
# (steps 27, 33) and drop path 0.2.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the GG authors published no detection recipe of their own.
_base_ = './maskrcnn_gg_t.py'

model = dict(backbone=dict(drop_path_rate=0.2))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

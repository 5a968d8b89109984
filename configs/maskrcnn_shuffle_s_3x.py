# Mask R-CNN Shuffle-S COCO 3x with Swin's recipe (no official Shuffle detection configs); source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_small_patch4_window7_mstrain_480-800_adamw_3x_coco.py
# As the Shuffle-S 1x config (same drop path 0.2) but 36 epochs (steps 27, 33).
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Shuffle authors published no detection recipe of their own.
_base_ = './maskrcnn_shuffle_s.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# Mask R-CNN Focal-T COCO 3x with Swin-T's recipe; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_adamw_3x_coco.py
# Focal's detection configs were never released: as the Focal-T 1x config (Swin-T's recipe) but 36 epochs
# (steps 27, 33) and drop path 0.2, as Swin-T 3x.
# Precision: fp16 AMP with dynamic loss scaling, inherited from Swin's recipe (the official Swin detection
# configs train with apex O1); the Focal authors published no detection recipe of their own.
_base_ = './maskrcnn_focal_t.py'

model = dict(backbone=dict(drop_path_rate=0.2))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

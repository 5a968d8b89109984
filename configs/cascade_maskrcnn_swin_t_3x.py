# Cascade Mask R-CNN Swin-T COCO 3x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py
# For the released v1.0.2 cascade_mask_rcnn_swin_tiny_patch4_window7.pth: the 1x config with 36 epochs (steps 27, 33)
# and drop path 0.2.
# Precision: fp16 mixed precision, as the official config (apex O1, dynamic loss scale), inherited from Mask R-CNN Swin-T.
_base_ = './cascade_maskrcnn_swin_t.py'

model = dict(backbone=dict(drop_path_rate=0.2))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

# Mask R-CNN CoaT-Lite Mini COCO 3x; source: mlpc-ucsd/CoaT tasks/mmdet/configs/coat/mask_rcnn_coat_lite_mini_mstrain_480-800_adamw_3x_coco.py
# As the 1x config (same augmentation, optimizer, drop path 0.0) but 36 epochs (steps 27, 33).
# Precision: fp16 AMP with dynamic loss scaling, inherited (the official CoaT detection configs' apex O1).
_base_ = './maskrcnn_coat_lite_mini.py'

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

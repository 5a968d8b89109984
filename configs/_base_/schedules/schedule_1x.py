# COCO 1x: 12 epochs, lr x0.1 after epochs 8 and 11, linear warm-up over the first 1000 iterations from 0.001 x lr
# (the warm-up of mmdet 3.x's Swin configs, configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py).
# No optimizer here: every recipe config sets its own optim_wrapper (all families use AdamW with their own values).
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]

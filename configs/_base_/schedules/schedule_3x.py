# COCO 3x: 36 epochs, lr x0.1 after epochs 27 and 33, linear warm-up over 500 iterations from 0.001 x lr
# (mmdet 3.x configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py). No optimizer: see schedule_1x.py.
# The Swin 3x configs inherit their 1x config instead and restate this schedule (bases may not share keys).
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33], gamma=0.1),
]

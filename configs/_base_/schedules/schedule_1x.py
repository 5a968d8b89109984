# COCO 1x: 12 epochs, lr x0.1 after epochs 8 and 11, linear warm-up over the first 500 iterations from 0.001 x lr
# (the official Swin and Twins detection configs inherit mmdet 2.x's schedule_1x: 500 iterations).
# No optimizer here: every recipe config sets its own optim_wrapper (all families use AdamW with their own values).
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]

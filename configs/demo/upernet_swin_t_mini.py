# Demo: the UperNet Swin-T recipe (../upernet_swin_t.py) shrunk to a few CPU minutes on the synthetic mini ADE20K of tools/make_mini_data.py
# Swapped: data_root (data/mini/ade/ADEChallengeData2016/, images ~320x256), single-scale resize to 160x128
# with 128x128 crops (UperNet's 512-channel heads at 1/4 resolution dominate the CPU time: ~3-4 CPU-seconds
# per iteration here, ~12 at 256x256), 2 images per process, 60 iterations (warm-up + poly), lr for a tiny
# batch from scratch (init_cfg=None: no pretrained file offline), frequent logs, one mIoU evaluation at the
# end, data loading in the main process.
# Run: python tools/make_mini_data.py --out data/mini && bash tools/dist_train.sh configs/demo/upernet_swin_t_mini.py 2
_base_ = '../upernet_swin_t.py'

data_root = 'data/mini/ade/ADEChallengeData2016/'
image_scale = (160, 128)
crop_size = (128, 128)
max_iters = 60

model = dict(data_preprocessor=dict(size=crop_size), backbone=dict(init_cfg=None))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=10, end=max_iters, by_epoch=False),
]
optim_wrapper = dict(optimizer=dict(lr=2e-4))

default_hooks = dict(
    logger=dict(interval=5),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=5)

# COCO instance segmentation with Swin's detection augmentation (from DETR / Sparse R-CNN): flip, then one of
# (a) resize the short side to one of 480..800 (step 32), long side <= 1333, or (b) resize to 400/500/600, crop an
# absolute 384..600 box, resize as in (a). Official: mmdet 2.x AutoAugment in Swin-Transformer-Object-Detection
# configs/swin/mask_rcnn_swin_*_mstrain_480-800_adamw_*x_coco.py; 3.x syntax as mmdet's
# configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py (RandomChoice + RandomChoiceResize).
_base_ = './coco_instance.py'

multi_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
                (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=multi_scales, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

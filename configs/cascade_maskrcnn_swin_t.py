# Cascade Mask R-CNN Swin-T COCO 1x; source: SwinTransformer/Swin-Transformer-Object-Detection configs/swin/cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_1x_coco.py
# with its configs/_base_/models/cascade_mask_rcnn_swin_fpn.py. Written for the released detector (SwinTransformer/storage
# v1.0.3 cascade_mask_rcnn_swin_tiny_patch4_window7_1x.pth, converted by tools/convert_weights.py --whole-model).
# As Mask R-CNN Swin-T 1x (data, optimizer, schedule, fp16 AMP: inherited), drop path 0.0, and the official cascade:
# three ConvFCBBoxHead stages of 4 convs (SyncBN) + 1 fc with GIoU loss on decoded boxes and class-specific
# regression, one FCNMaskHead per stage, stage IoUs 0.5 / 0.6 / 0.7, RPN with smooth L1 and 2000 training proposals.
# Precision: fp16 mixed precision, as the official config (apex O1, dynamic loss scale), inherited from Mask R-CNN Swin-T.
_base_ = './maskrcnn_swin_t.py'


def _bbox_stage(target_stds):
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


def _rcnn_stage(iou):
    return dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                      match_low_quality=False, ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
        mask_size=28,
        pos_weight=-1,
        debug=False)


model = dict(
    type='CascadeRCNN',
    backbone=dict(drop_path_rate=0.0),
    rpn_head=dict(loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    # RoI extractors and the mask head as Mask R-CNN's (inherited); CascadeRoIHead builds one mask head per stage.
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_head=[_bbox_stage([0.1, 0.1, 0.2, 0.2]), _bbox_stage([0.05, 0.05, 0.1, 0.1]),
                   _bbox_stage([0.033, 0.033, 0.067, 0.067])]),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),
        rcnn=[_rcnn_stage(0.5), _rcnn_stage(0.6), _rcnn_stage(0.7)]),
)

#!/usr/bin/env python
"""Draw a detector's predictions on the first images of its test set, next to the ground truth, into one picture.

    python tools/visualize.py CONFIG CHECKPOINT --out predictions.png [--num-images 2] [--score-thr T]

Each row is one image: ground truth on the left, predictions with a score of at least ``--score-thr`` (default:
the config's ``model.test_cfg.rcnn.score_thr``, what COCO evaluation counts, else 0.3) on the right (boxes, masks, class names and scores, drawn by mmdet's DetLocalVisualizer). Prints, per
image, how many objects got a box of their class (IoU >= 0.5), how many drawn predictions sit on an object without
framing any (a part of one, a shifted duplicate) and how many on the background. For mmdet configs
(``default_scope = 'mmdet'``).
"""
from __future__ import annotations

import argparse
import os
import sys

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import vt_backbones  # noqa: E402,F401  applies vt_backbones.compat before anything is built or loaded
from vt_backbones.fileio import atomic_output  # noqa: E402

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')  # mmcv writes the format its name's extension says


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='mmdet config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='the picture to write (.png or .jpg)')
    parser.add_argument('--num-images', type=int, default=2, help='how many test images, from the first (default 2)')
    parser.add_argument('--score-thr', type=float,
                        help="draw predictions scoring at least this (default: the config's test score_thr, or 0.3)")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(IMAGE_EXTENSIONS):
        parser.error(f'--out must name a {", ".join(IMAGE_EXTENSIONS)} file, got {args.out}')
    if args.num_images < 1:
        parser.error(f'--num-images must be >= 1, got {args.num_images}')
    if args.score_thr is not None and not 0.0 <= args.score_thr <= 1.0:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return args


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Stacks HxWx3 images top to bottom, padding narrower ones with white on the right."""
    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(padded, axis=0)


def count_matches(sample, score_thr: float, iou_thr: float = 0.5) -> tuple[int, int, int, int]:
    """What the picture shows, in numbers, of the predictions scoring at least ``score_thr``: (objects with a
    prediction of their class at IoU >= ``iou_thr``, predictions, predictions on an object that frame none
    (IoU < ``iou_thr`` with every object: a part or a shifted duplicate), predictions mostly on the background
    (less than half of the box on any object))."""
    from mmdet.structures.bbox import bbox_overlaps, get_box_tensor

    kept = sample.pred_instances[sample.pred_instances.scores >= score_thr]
    boxes, objects = get_box_tensor(kept.bboxes), get_box_tensor(sample.gt_instances.bboxes)
    overlaps = bbox_overlaps(boxes, objects)
    same_class = kept.labels[:, None] == sample.gt_instances.labels[None, :]
    found = int(((overlaps >= iou_thr) & same_class).any(dim=0).sum())
    on_background = (bbox_overlaps(boxes, objects, mode='iof') < 0.5).all(dim=1)
    framing_none = (overlaps < iou_thr).all(dim=1)
    return found, len(kept), int((framing_none & ~on_background).sum()), int(on_background.sum())


def write_image_atomically(image_rgb: np.ndarray, out_file: str) -> None:
    with atomic_output(out_file) as tmp:
        if not mmcv.imwrite(image_rgb[..., ::-1], tmp):  # mmcv writes BGR, in the format of the name's extension
            raise OSError(f'could not write {out_file}')


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if cfg.get('default_scope') != 'mmdet':
        sys.exit(f"error: {args.config} is not an mmdet config (default_scope = {cfg.get('default_scope')!r}, "
                 "expected 'mmdet')")
    from mmdet.apis import init_detector  # mmdet only now: the error above must not need it
    from mmdet.registry import DATASETS
    from mmdet.visualization import DetLocalVisualizer

    if args.score_thr is None:
        args.score_thr = cfg.model.get('test_cfg', {}).get('rcnn', {}).get('score_thr', 0.3)
    model = init_detector(cfg, args.checkpoint, device='cpu')  # eval mode, class names from the checkpoint
    dataset = DATASETS.build(cfg.test_dataloader.dataset)  # the test pipeline also loads the ground truth
    if args.num_images > len(dataset):
        sys.exit(f'error: --num-images {args.num_images} but the test set has {len(dataset)} images')
    visualizer = DetLocalVisualizer()
    visualizer.dataset_meta = model.dataset_meta

    rows = []
    for index in range(args.num_images):
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([dataset[index]]))[0]
        image = mmcv.imread(sample.img_path, channel_order='rgb')
        visualizer.add_datasample(os.path.basename(sample.img_path), image, sample, draw_gt=True, draw_pred=True,
                                  pred_score_thr=args.score_thr)
        rows.append(visualizer.get_image())
        found, kept, misplaced, background = count_matches(sample, args.score_thr)
        print(f'{sample.img_path}: {len(sample.gt_instances)} objects, {found} with a box of their class '
              f'(IoU >= 0.5); {kept} predictions scoring >= {args.score_thr}: {misplaced} on an object framing '
              f'none (IoU < 0.5), {background} on the background ({len(sample.pred_instances)} predictions in all)')
    write_image_atomically(stack_rows(rows), args.out)
    print(f'predictions: {args.out} (left: ground truth, right: predictions)')


if __name__ == '__main__':
    main()

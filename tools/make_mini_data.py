"""Write a tiny, deterministic synthetic COCO 2017 + ADE20K dataset.

The trees mirror the real datasets' formats and layouts, so an mmdet/mmseg
config runs on them by changing only ``data_root``::

    OUT/coco/annotations/instances_{train,val}2017.json
    OUT/coco/{train,val}2017/<12-digit image id>.jpg
    OUT/ade/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_%08d.jpg
    OUT/ade/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_%08d.png

Scenes are noisy backgrounds with a few filled shapes whose colour (and form)
is tied to their class, so a model can learn something in a few CPU minutes.
Same arguments give byte-identical files. Uses only numpy, cv2 and json: it
must run before the package is installed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np

JPEG_QUALITY = 90
MIN_SIDE, MAX_SIDE = 64, 4096
# "Mini" dataset; the bound also keeps train and val COCO image ids disjoint.
MAX_IMAGES = 100_000
VAL_IMAGE_ID_OFFSET = 1_000_000

# The 80 COCO 2017 categories exactly as in instances_*2017.json: (id, name, supercategory).
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"),
    (4, "motorcycle", "vehicle"), (5, "airplane", "vehicle"), (6, "bus", "vehicle"),
    (7, "train", "vehicle"), (8, "truck", "vehicle"), (9, "boat", "vehicle"),
    (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"),
    (19, "horse", "animal"), (20, "sheep", "animal"), (21, "cow", "animal"),
    (22, "elephant", "animal"), (23, "bear", "animal"), (24, "zebra", "animal"),
    (25, "giraffe", "animal"), (27, "backpack", "accessory"), (28, "umbrella", "accessory"),
    (31, "handbag", "accessory"), (32, "tie", "accessory"), (33, "suitcase", "accessory"),
    (34, "frisbee", "sports"), (35, "skis", "sports"), (36, "snowboard", "sports"),
    (37, "sports ball", "sports"), (38, "kite", "sports"), (39, "baseball bat", "sports"),
    (40, "baseball glove", "sports"), (41, "skateboard", "sports"), (42, "surfboard", "sports"),
    (43, "tennis racket", "sports"), (44, "bottle", "kitchen"), (46, "wine glass", "kitchen"),
    (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"),
    (53, "apple", "food"), (54, "sandwich", "food"), (55, "orange", "food"),
    (56, "broccoli", "food"), (57, "carrot", "food"), (58, "hot dog", "food"),
    (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"),
    (88, "teddy bear", "indoor"), (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)


class ObjectStyle(NamedTuple):
    """How objects of one COCO category are drawn."""

    shape: str  # "rectangle", "ellipse" or "polygon"
    aspect: float  # height / width of the object's box
    colour_bgr: tuple[int, int, int]


# The few categories that appear in the images; saturated colours stand out from the grey background.
COCO_OBJECT_STYLES: dict[int, ObjectStyle] = {
    1: ObjectStyle("ellipse", 2.0, (50, 50, 220)),  # person: tall red ellipse
    3: ObjectStyle("rectangle", 0.5, (220, 90, 40)),  # car: wide blue rectangle
    18: ObjectStyle("polygon", 0.8, (50, 190, 50)),  # dog: green blob
    62: ObjectStyle("rectangle", 1.3, (40, 200, 230)),  # chair: upright yellow rectangle
}

# ADE20K label values (1-based index into the 150 classes; 0 = "other", ignored by reduce_zero_label).
ADE_OTHER = 0
ADE_BUILDING, ADE_SKY, ADE_TREE, ADE_ROAD, ADE_GRASS, ADE_PERSON, ADE_CAR = 2, 3, 5, 7, 10, 13, 21
ADE_COLOURS_BGR: dict[int, tuple[int, int, int]] = {
    ADE_BUILDING: (70, 100, 160),
    ADE_SKY: (235, 200, 130),
    ADE_TREE: (30, 110, 30),
    ADE_ROAD: (85, 85, 85),
    ADE_GRASS: (90, 210, 130),
    ADE_PERSON: (160, 60, 200),
    ADE_CAR: (40, 40, 210),
}

# COCO scenes: few, large objects (extent = sqrt(box area) as a fraction of the image's short side). `make demo`
# trains Mask R-CNN from scratch for a few CPU minutes at ~1/2 of this size; smaller or more crowded shapes left its
# boxes and masks loose (bbox mAP 0.06-0.16, segm 0.01-0.05 with 1-4 objects of extent 0.2-0.45).
COCO_OBJECTS_PER_IMAGE = (1, 3)
COCO_OBJECT_EXTENT = (0.3, 0.55)

COCO_DATASET, ADE_DATASET = 0, 1
SPLITS = ("train", "val")


class Polygon(NamedTuple):
    """An integer-vertex outline, drawn and annotated identically."""

    points: np.ndarray  # (N, 2) int32 x, y

    def bbox_xywh(self) -> list[float]:
        x_min, y_min = self.points.min(axis=0)
        x_max, y_max = self.points.max(axis=0)
        return [float(x_min), float(y_min), float(x_max - x_min), float(y_max - y_min)]

    def area(self) -> float:
        return round(float(cv2.contourArea(self.points)), 2)

    def coco_segmentation(self) -> list[list[float]]:
        return [[float(v) for v in self.points.reshape(-1)]]


def image_rng(seed: int, dataset: int, split: str, index: int) -> np.random.Generator:
    """One stream per image, so an image never depends on how many others are generated."""
    return np.random.default_rng([seed, dataset, SPLITS.index(split), index])


def image_size(rng: np.random.Generator, base_size: tuple[int, int]) -> tuple[int, int]:
    """Base (width, height) shrunk by up to 1/8 per side, as real datasets vary in size."""
    width, height = base_size
    return (width - int(rng.integers(0, width // 8 + 1)), height - int(rng.integers(0, height // 8 + 1)))


def noisy_canvas(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A low-saturation grey background with per-pixel noise (float, BGR)."""
    base = rng.uniform(90, 170) + rng.uniform(-15, 15, size=3)
    return base + rng.normal(0, 12, size=(height, width, 3))


def finish_image(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Add sensor-like noise everywhere so shapes are not perfectly flat, then quantise."""
    canvas = canvas + rng.normal(0, 6, size=canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def shape_polygon(rng: np.random.Generator, shape: str, box: tuple[int, int, int, int]) -> Polygon:
    """Outline of `shape` inscribed in box (x, y, w, h)."""
    x, y, w, h = box
    if shape == "rectangle":
        points = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    elif shape == "ellipse":
        ellipse = cv2.ellipse2Poly((x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, 15)
        points = ellipse[:-1]  # the last point repeats the first
    elif shape == "polygon":
        # Star-shaped around the centre: sorted angles keep the outline simple.
        num_vertices = 7
        angles = (np.arange(num_vertices) + rng.uniform(-0.3, 0.3, num_vertices)) * 2 * np.pi / num_vertices
        radii = rng.uniform(0.6, 1.0, num_vertices)
        xs = x + w / 2 + radii * np.cos(angles) * w / 2
        ys = y + h / 2 + radii * np.sin(angles) * h / 2
        points = np.stack([np.rint(xs), np.rint(ys)], axis=1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return Polygon(np.asarray(points, dtype=np.int32))


def place_boxes(
    rng: np.random.Generator, width: int, height: int, aspects: list[float], extent_range: tuple[float, float],
    gap: int = 4,
) -> list[tuple[int, int, int, int] | None]:
    """Non-overlapping (x, y, w, h) boxes, or None where no free spot was found.

    Objects never overlap so each polygon is exactly what is visible.
    """
    placed: list[tuple[int, int, int, int]] = []
    boxes: list[tuple[int, int, int, int] | None] = []
    short_side = min(width, height)
    for aspect in aspects:
        box = None
        for _ in range(50):
            extent = rng.uniform(*extent_range) * short_side
            w = max(8, int(extent / np.sqrt(aspect)))
            h = max(8, int(extent * np.sqrt(aspect)))
            w, h = min(w, width - 2), min(h, height - 2)
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if all(x + w + gap < px or px + pw + gap < x or y + h + gap < py or py + ph + gap < y
                   for px, py, pw, ph in placed):
                box = (x, y, w, h)
                placed.append(box)
                break
        boxes.append(box)
    return boxes


def coco_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[tuple[int, Polygon]]]:
    """An image with a few category-styled shapes and their (category_id, outline) list."""
    category_ids = sorted(COCO_OBJECT_STYLES)
    fewest, most = COCO_OBJECTS_PER_IMAGE
    chosen = [category_ids[i] for i in rng.integers(0, len(category_ids), size=int(rng.integers(fewest, most + 1)))]
    boxes = place_boxes(rng, width, height, [COCO_OBJECT_STYLES[c].aspect for c in chosen], COCO_OBJECT_EXTENT)
    canvas = noisy_canvas(rng, width, height)
    objects = []
    for category_id, box in zip(chosen, boxes):
        if box is None:
            continue
        style = COCO_OBJECT_STYLES[category_id]
        polygon = shape_polygon(rng, style.shape, box)
        colour = np.array(style.colour_bgr) + rng.uniform(-20, 20, size=3)
        cv2.fillPoly(canvas, [polygon.points], colour.tolist())
        objects.append((category_id, polygon))
    return finish_image(rng, canvas), objects


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes at a fixed quality (encoding in memory keeps output byte-stable)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("cv2 failed to encode a JPEG")
    return data.tobytes()


def encode_png(labels: np.ndarray) -> bytes:
    """Single-channel 8-bit PNG bytes."""
    ok, data = cv2.imencode(".png", labels)
    if not ok:
        raise RuntimeError("cv2 failed to encode a PNG")
    return data.tobytes()


def write_json(path: Path, content: dict) -> None:
    """Compact json with sorted keys, so equal content gives equal bytes."""
    path.write_text(json.dumps(content, sort_keys=True) + "\n", encoding="utf-8")


def build_coco(root: Path, seed: int, counts: dict[str, int], base_size: tuple[int, int]) -> dict[str, str]:
    """Write the COCO tree under root; return a per-split summary."""
    (root / "annotations").mkdir(parents=True)
    categories = [{"id": i, "name": n, "supercategory": s} for i, n, s in COCO_CATEGORIES]
    summary = {}
    for split in SPLITS:
        image_dir = root / f"{split}2017"
        image_dir.mkdir()
        images, annotations = [], []
        id_offset = VAL_IMAGE_ID_OFFSET if split == "val" else 0
        for index in range(counts[split]):
            rng = image_rng(seed, COCO_DATASET, split, index)
            width, height = image_size(rng, base_size)
            image, objects = coco_scene(rng, width, height)
            image_id = id_offset + index + 1
            file_name = f"{image_id:012d}.jpg"
            (image_dir / file_name).write_bytes(encode_jpeg(image))
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height,
                           "license": 1})
            for category_id, polygon in objects:
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                    "segmentation": polygon.coco_segmentation(), "area": polygon.area(),
                    "bbox": polygon.bbox_xywh(), "iscrowd": 0,
                })
        write_json(root / "annotations" / f"instances_{split}2017.json", {
            "info": {"description": "vt_backbones synthetic mini COCO 2017", "version": "1.0", "year": 2017,
                     "contributor": "tools/make_mini_data.py", "url": "", "date_created": "2017/09/01"},
            "licenses": [{"id": 1, "name": "Synthetic data, no restrictions", "url": ""}],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        })
        summary[split] = f"{len(images)} images, {len(annotations)} instances"
    return summary


def ade_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A street-like image (sky, ground, buildings, trees, cars, people) and its label map."""
    canvas = noisy_canvas(rng, width, height)
    labels = np.zeros((height, width), np.uint8)

    def paint(points: list[tuple[float, float]] | Polygon, label: int) -> None:
        """Fill one region in the image and its label map with the same outline."""
        polygon = points if isinstance(points, Polygon) else Polygon(np.rint(points).astype(np.int32))
        colour = (np.array(ADE_COLOURS_BGR[label]) + rng.uniform(-20, 20, size=3)
                  if label != ADE_OTHER else rng.uniform(0, 255, size=3))
        cv2.fillPoly(canvas, [polygon.points], colour.tolist())
        cv2.fillPoly(labels, [polygon.points], label)

    horizon = int(rng.uniform(0.35, 0.6) * height)
    paint([(0, 0), (width - 1, 0), (width - 1, horizon), (0, horizon)], ADE_SKY)
    ground = ADE_ROAD if rng.random() < 0.5 else ADE_GRASS
    paint([(0, horizon), (width - 1, horizon), (width - 1, height - 1), (0, height - 1)], ground)
    for _ in range(int(rng.integers(1, 4))):
        w = rng.uniform(0.12, 0.3) * width
        x = rng.uniform(0, width - w)
        top = rng.uniform(0.05, 0.8) * horizon
        paint([(x, top), (x + w, top), (x + w, horizon), (x, horizon)], ADE_BUILDING)
    for _ in range(int(rng.integers(0, 3))):
        w, h = int(rng.uniform(0.08, 0.18) * width), int(rng.uniform(0.15, 0.3) * height)
        x, y = int(rng.uniform(0, width - w)), int(horizon - h * rng.uniform(0.6, 0.9))
        paint(shape_polygon(rng, "ellipse", (x, y, w, h)), ADE_TREE)
    for _ in range(int(rng.integers(0, 3))):
        w, h = rng.uniform(0.12, 0.25) * width, rng.uniform(0.06, 0.12) * height
        x, y = rng.uniform(0, width - w), rng.uniform(horizon, height - h)
        paint([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], ADE_CAR)
    for _ in range(int(rng.integers(0, 3))):
        w, h = int(rng.uniform(0.03, 0.06) * width), int(rng.uniform(0.12, 0.22) * height)
        x, y = int(rng.uniform(0, width - w)), int(rng.uniform(horizon - h / 2, height - h))
        paint(shape_polygon(rng, "ellipse", (x, y, w, h)), ADE_PERSON)
    if rng.random() < 0.5:
        # An unlabelled blob exercises the ignore index (0 -> 255 under reduce_zero_label).
        w, h = int(rng.uniform(0.08, 0.15) * width), int(rng.uniform(0.08, 0.15) * height)
        x, y = int(rng.uniform(0, width - w)), int(rng.uniform(0, height - h))
        paint(shape_polygon(rng, "polygon", (x, y, w, h)), ADE_OTHER)
    return finish_image(rng, canvas), labels


def build_ade(root: Path, seed: int, counts: dict[str, int], base_size: tuple[int, int]) -> dict[str, str]:
    """Write the ADEChallengeData2016 tree under root; return a per-split summary."""
    dataset_root = root / "ADEChallengeData2016"
    summary = {}
    for split, folder in zip(SPLITS, ("training", "validation")):
        image_dir = dataset_root / "images" / folder
        label_dir = dataset_root / "annotations" / folder
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        for index in range(counts[split]):
            rng = image_rng(seed, ADE_DATASET, split, index)
            width, height = image_size(rng, base_size)
            image, labels = ade_scene(rng, width, height)
            stem = f"ADE_{split}_{index + 1:08d}"
            (image_dir / f"{stem}.jpg").write_bytes(encode_jpeg(image))
            (label_dir / f"{stem}.png").write_bytes(encode_png(labels))
        summary[split] = f"{counts[split]} images + label maps"
    return summary


def default_dir_mode() -> int:
    """Permissions a plain mkdir would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def publish_tree(final_dir: Path, build: Callable[[Path], dict[str, str]]) -> dict[str, str]:
    """Build into a temporary sibling, then swap it into place, so no partial tree is ever visible."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.staging-", dir=final_dir.parent))
    try:
        summary = build(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.chmod(default_dir_mode())  # mkdtemp makes it private (0700)
    if final_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.retired-", dir=final_dir.parent))
        final_dir.rename(retired / final_dir.name)
        staging.rename(final_dir)
        shutil.rmtree(retired)
    else:
        staging.rename(final_dir)
    return summary


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def image_count(text: str) -> int:
    """argparse type: an image count in 1..MAX_IMAGES."""
    value = parse_int(text)
    if not 1 <= value <= MAX_IMAGES:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_IMAGES}, got {value}")
    return value


def seed_value(text: str) -> int:
    """argparse type: a non-negative integer (numpy SeedSequence rejects negatives)."""
    value = parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def size_value(text: str) -> tuple[int, int]:
    """argparse type: 'WxH' with both sides in MIN_SIDE..MAX_SIDE."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 320x256, got {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"width and height must be in {MIN_SIDE}..{MAX_SIDE}, got {text!r}")
    return width, height


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and validate the command line; bad values exit with an error naming the argument."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="output directory; DIR/coco and DIR/ade are (re)created inside it")
    parser.add_argument("--num-train", type=image_count, default=64, help="training images per dataset")
    parser.add_argument("--num-val", type=image_count, default=16, help="validation images per dataset")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed (>= 0)")
    parser.add_argument("--size", type=size_value, default=(320, 256),
                        help="largest image size WxH; each image is up to 1/8 smaller per side")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"argument --out: {args.out} exists and is not a directory")
    return args


def main(argv: list[str] | None = None) -> None:
    """Generate both datasets under --out and print where they are."""
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {"train": args.num_train, "val": args.num_val}
    datasets = {
        "coco": lambda root: build_coco(root, args.seed, counts, args.size),
        "ade": lambda root: build_ade(root, args.seed, counts, args.size),
    }
    for name, build in datasets.items():
        summary = publish_tree(args.out / name, build)
        print(f"{args.out / name}: " + "; ".join(f"{split}: {text}" for split, text in summary.items()))
    print(f"Point configs at data_root={args.out / 'coco'}/ and {args.out / 'ade' / 'ADEChallengeData2016'}")


if __name__ == "__main__":
    main()

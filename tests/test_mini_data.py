"""Checks tools/make_mini_data.py output with independent readers (pycocotools, cv2, mmdet, mmseg)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "make_mini_data.py"
SPLITS = ("train", "val")
ADE_FOLDERS = {"train": "training", "val": "validation"}

# Independent facts from COCO 2017's instances json: id -> (name, supercategory).
KNOWN_COCO_CATEGORIES = {
    1: ("person", "person"),
    3: ("car", "vehicle"),
    18: ("dog", "animal"),
    44: ("bottle", "kitchen"),
    62: ("chair", "furniture"),
    90: ("toothbrush", "indoor"),
}
USED_COCO_CATEGORY_IDS = {1, 3, 18, 62}
DEFAULT_COUNTS = {"train": 64, "val": 16}
# What `make demo`'s short training needs (tools/make_mini_data.py): a few large objects per image.
MOST_OBJECTS_PER_IMAGE = 3
SMALLEST_OBJECT_SIDE = 0.2  # the longer side of every object's box, as a fraction of the image's short side
# ADE20K png value -> class name (value v is class index v - 1 under reduce_zero_label).
KNOWN_ADE_CLASSES = {1: "wall", 2: "building", 3: "sky", 5: "tree", 7: "road", 10: "grass", 13: "person",
                     21: "car"}


def make_data(out: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the script as a user would, capturing its output."""
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=60)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def make_mini_data() -> ModuleType:
    """The script imported as a module, for in-process checks that need no fresh interpreter."""
    spec = importlib.util.spec_from_file_location("make_mini_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset with the default arguments, shared by the read-only checks."""
    out = tmp_path_factory.mktemp("mini")
    result = make_data(out)
    assert result.returncode == 0, result.stderr
    assert "coco" in result.stdout and "ade" in result.stdout
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_coco_annotations_are_consistent(data_root: Path, split: str) -> None:
    coco_root = data_root / "coco"
    coco = COCO(str(coco_root / "annotations" / f"instances_{split}2017.json"))

    categories = coco.loadCats(coco.getCatIds())
    assert len(categories) == 80
    for category in categories:
        if category["id"] in KNOWN_COCO_CATEGORIES:
            assert (category["name"], category["supercategory"]) == KNOWN_COCO_CATEGORIES[category["id"]]
    used = {ann["category_id"] for ann in coco.dataset["annotations"]}
    assert used and used <= USED_COCO_CATEGORY_IDS

    images = coco.dataset["images"]
    assert len(images) == DEFAULT_COUNTS[split]
    for image_info in images:
        assert image_info["file_name"] == f"{image_info['id']:012d}.jpg"
        image = cv2.imread(str(coco_root / f"{split}2017" / image_info["file_name"]))
        assert image is not None
        assert image.shape == (image_info["height"], image_info["width"], 3)
        # mmdet drops images without instances by default, so every image should have some.
        assert 1 <= len(coco.getAnnIds(imgIds=[image_info["id"]])) <= MOST_OBJECTS_PER_IMAGE

    for ann in coco.dataset["annotations"]:
        assert ann["iscrowd"] == 0
        (polygon,) = ann["segmentation"]
        xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
        assert len(xs) >= 3
        assert ann["bbox"] == pytest.approx([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()])
        image_info = coco.imgs[ann["image_id"]]
        assert xs.min() >= 0 and xs.max() < image_info["width"]
        assert ys.min() >= 0 and ys.max() < image_info["height"]
        assert max(ann["bbox"][2:]) >= SMALLEST_OBJECT_SIDE * min(image_info["width"], image_info["height"])
        mask_area = coco.annToMask(ann).sum()
        assert mask_area > 0
        assert ann["area"] == pytest.approx(mask_area, rel=0.15)


def test_coco_image_ids_do_not_collide_across_splits(data_root: Path) -> None:
    ids = [COCO(str(data_root / "coco" / "annotations" / f"instances_{split}2017.json")).getImgIds()
           for split in SPLITS]
    assert not set(ids[0]) & set(ids[1])


@pytest.mark.parametrize("split", SPLITS)
def test_ade_label_maps_match_images(data_root: Path, split: str) -> None:
    ade_root = data_root / "ade" / "ADEChallengeData2016"
    image_paths = sorted((ade_root / "images" / ADE_FOLDERS[split]).glob("*.jpg"))
    label_paths = sorted((ade_root / "annotations" / ADE_FOLDERS[split]).glob("*.png"))
    assert [p.stem for p in image_paths] == [p.stem for p in label_paths]
    assert [p.name for p in image_paths] == [f"ADE_{split}_{i:08d}.jpg" for i in range(1, len(image_paths) + 1)]
    assert len(image_paths) == DEFAULT_COUNTS[split]
    for image_path, label_path in zip(image_paths, label_paths):
        image = cv2.imread(str(image_path))
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint8 and labels.ndim == 2
        assert labels.shape == image.shape[:2]
        values = set(np.unique(labels).tolist())
        assert values <= {0, *KNOWN_ADE_CLASSES}  # all within 0..150, and only classes we can name
        assert len(values - {0}) >= 2


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    small = ("--num-train", "3", "--num-val", "2", "--size", "128x96")
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        result = make_data(tmp_path / name, *small, "--seed", seed)
        assert result.returncode == 0, result.stderr
    first, again, other = (tree_bytes(tmp_path / name) for name in "abc")
    assert first and first == again
    assert first.keys() == other.keys()
    assert all(first[path] != other[path] for path in first if path.endswith((".jpg", ".png")))
    assert first["coco/annotations/instances_train2017.json"] != other["coco/annotations/instances_train2017.json"]


def test_rerun_replaces_existing_trees_and_leaves_no_staging(tmp_path: Path) -> None:
    stale = tmp_path / "coco" / "stale.txt"
    stale.parent.mkdir()
    stale.write_text("from an older run")
    result = make_data(tmp_path, "--num-train", "1", "--num-val", "1", "--size", "96x96")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ade", "coco"]


def test_failed_build_keeps_previous_tree(make_mini_data: ModuleType, tmp_path: Path) -> None:
    previous = tmp_path / "coco" / "keep.txt"
    previous.parent.mkdir()
    previous.write_text("previous dataset")

    def interrupted_build(root: Path) -> dict[str, str]:
        (root / "half_written.jpg").write_bytes(b"")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_mini_data.publish_tree(tmp_path / "coco", interrupted_build)
    assert previous.read_text() == "previous dataset"
    assert [p.name for p in tmp_path.iterdir()] == ["coco"]


@pytest.mark.parametrize("args, named", [
    (["--num-train", "0"], "--num-train"),
    (["--num-val", "many"], "--num-val"),
    (["--seed", "-1"], "--seed"),
    (["--size", "320by256"], "--size"),
    (["--size", "16x16"], "--size"),
])
def test_bad_argument_is_rejected_by_name(make_mini_data: ModuleType, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], args: list[str], named: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        make_mini_data.main(["--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code != 0
    assert f"argument {named}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = make_data(not_a_dir)
    assert result.returncode != 0
    assert "argument --out" in result.stderr


def test_mmdet_coco_dataset_loads(data_root: Path) -> None:
    pytest.importorskip("mmdet")
    from mmdet.datasets import CocoDataset  # pipeline=[] builds nothing, so no registry setup is needed
    dataset = CocoDataset(data_root=str(data_root / "coco"), ann_file="annotations/instances_train2017.json",
                          data_prefix=dict(img="train2017/"), pipeline=[])
    assert len(dataset) > 0
    assert dataset.cat_ids == sorted(dataset.cat_ids) and len(dataset.cat_ids) == 80
    item = dataset[0]
    assert Path(item["img_path"]).is_file()
    assert item["instances"]
    labels = {dataset.metainfo["classes"][inst["bbox_label"]] for inst in item["instances"]}
    assert labels <= {KNOWN_COCO_CATEGORIES[i][0] for i in USED_COCO_CATEGORY_IDS}


def test_mmseg_ade20k_dataset_loads(data_root: Path) -> None:
    pytest.importorskip("mmseg")
    from mmseg.datasets import ADE20KDataset
    dataset = ADE20KDataset(data_root=str(data_root / "ade" / "ADEChallengeData2016"),
                            data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
                            pipeline=[])
    assert len(dataset) > 0
    item = dataset[0]
    assert Path(item["img_path"]).is_file() and Path(item["seg_map_path"]).is_file()
    assert item["reduce_zero_label"]
    classes = dataset.metainfo["classes"]
    for value, name in KNOWN_ADE_CLASSES.items():
        assert classes[value - 1].strip() == name

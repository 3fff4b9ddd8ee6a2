"""Export of a label store (coco-panoptic, vipseg, youtube-vis, png), class-to-category
mapping, and export-then-eval equal to eval of the store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.eval.store import evaluate_store
from streamseg.eval.video import evaluate_vipseg
from streamseg.export import export_store
from streamseg.panoptic_png import id_to_rgb, read_panoptic_png
from streamseg.video.rle import decode_mask
from streamseg.video.store import LabelStore

SIZE = (4, 8)
VOCABULARY = [
    {"name": "dog", "synonyms": ["dog", "puppy"], "is_thing": True},
    {"name": "grass", "synonyms": ["grass"], "is_thing": False},
    {"name": "cat", "synonyms": ["cat"], "is_thing": True},
    {"name": "kite", "synonyms": ["kite"], "is_thing": True},
]
# the dataset calls the dog "puppy" (matched through the synonym); it has no kite
CATEGORIES = [
    {"id": 10, "name": "puppy", "isthing": 1},
    {"id": 20, "name": "grass", "isthing": 0},
    {"id": 30, "name": "cat", "isthing": 1},
]


def store_labels(t: int) -> np.ndarray:
    """Frame t of the store: track 1 (dog) moves right along the top, track 2 (grass) fills
    the bottom half, track 5 (kite) sits top-right in frames 2 and 3. (4, 8) int32."""
    labels = np.zeros(SIZE, np.int32)
    labels[2:, :] = 2
    labels[0:2, t : t + 2] = 1
    if t >= 2:
        labels[0, 6:8] = 5
    return labels


def make_store(path: Path, frames: int = 4) -> Path:
    store = LabelStore.open(
        path,
        label_size=SIZE,
        identity={"source": {"name": "test"}},
        attrs={
            "vocabulary": {
                "names": [c["name"] for c in VOCABULARY],
                "is_thing": [c["is_thing"] for c in VOCABULARY],
                "json": json.dumps(VOCABULARY),
            }
        },
    )
    labels = np.stack([store_labels(t) for t in range(frames)])
    rows: dict[str, list] = {k: [] for k in ("frame", "track_id", "class_id", "score", "area")}
    for t in range(frames):
        for track in np.unique(labels[t]).tolist():
            if track == 0:
                continue
            # the dog is called "cat" (low score) in frame 1: its voted class stays dog
            cls = {1: 0 if t != 1 else 2, 2: 1, 5: 3}[track]
            rows["frame"].append(t)
            rows["track_id"].append(track)
            rows["class_id"].append(cls)
            rows["score"].append(0.9 if t != 1 else 0.2)
            rows["area"].append(int((labels[t] == track).sum()))
    segments = {k: np.array(v) for k, v in rows.items()}
    for key in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"):
        segments[key] = np.zeros(len(rows["frame"]))
    segments["is_thing"] = np.array([c != 1 for c in rows["class_id"]], np.uint8)
    frame_rows = {
        "index": np.arange(frames),
        "pts": np.arange(frames),
        "time": np.arange(frames) / 10,
        "keyframe": np.zeros(frames),
        "corrupt": np.zeros(frames),
    }
    store.write_block(labels, frame_rows, segments)
    store.finish()
    return path


def write_ground_truth(folder: Path, frames: int = 4) -> Path:
    """VIPSeg ground truth of video "clip": the dog (id 7) and grass (id 8) as in the store,
    but the dog's last frame shifted by one column."""
    (folder / "gt" / "clip").mkdir(parents=True)
    annotations = []
    for t in range(frames):
        ids = np.zeros(SIZE, np.int64)
        ids[2:, :] = 8
        x = t if t < 3 else t + 1
        ids[0:2, x : x + 2] = 7
        Image.fromarray(id_to_rgb(ids)).save(folder / "gt" / "clip" / f"{t:06d}.png")
        segments = [
            {"id": 7, "category_id": 10, "iscrowd": 0, "area": int((ids == 7).sum())},
            {"id": 8, "category_id": 20, "iscrowd": 0, "area": int((ids == 8).sum())},
        ]
        annotations.append({"file_name": f"{t:06d}.png", "segments_info": segments})
    data = {
        "videos": [{"video_id": "clip", "annotations": annotations}],
        "categories": CATEGORIES,
    }
    path = folder / "gt.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "clip.zarr")


def test_export_then_eval_equals_eval_of_store(store, tmp_path):
    gt_json = write_ground_truth(tmp_path)
    categories = {c["id"]: c for c in CATEGORIES}
    direct = evaluate_store(store, gt_json, tmp_path / "gt", windows=(1, 2, 4))
    assert direct["unmapped_classes"] == ["kite"]
    summary = export_store(store, tmp_path / "out", "vipseg", categories=categories)
    assert summary["frames"] == 4 and summary["unmapped_classes"] == ["kite"]
    exported = evaluate_vipseg(
        gt_json,
        tmp_path / "gt",
        tmp_path / "out" / "panoptic.json",
        tmp_path / "out" / "panomasks",
        (1, 2, 4),
    )
    direct.pop("unmapped_classes")
    assert exported == direct
    # hand check: per frame the dog matches in frames 0-2 (IoU 1) and frame 3 (IoU 2/6 -> no)
    things = direct["vpq"]["1"]["per_class"]["10"]
    assert things["rq"] == pytest.approx(3 / (3 + 0.5 + 0.5))
    assert direct["vpq"]["1"]["per_class"]["20"]["pq"] == 1.0
    # the kite (no category) is VOID in the export, so it is not a false positive
    ids = read_panoptic_png(tmp_path / "out" / "panomasks" / "clip" / "000002.png")
    assert ids[0, 6] == 0


def test_exported_classes_are_the_track_vote(store, tmp_path):
    categories = {c["id"]: c for c in CATEGORIES}
    export_store(store, tmp_path / "coco", "coco-panoptic", categories=categories)
    data = json.loads((tmp_path / "coco" / "panoptic.json").read_text())
    assert [a["image_id"] for a in data["annotations"]] == [0, 1, 2, 3]
    frame1 = {s["id"]: s for s in data["annotations"][1]["segments_info"]}
    assert frame1[1]["category_id"] == 10  # called cat in this frame, voted dog over the track
    assert frame1[1]["area"] == 4 and frame1[1]["bbox"] == [1, 0, 2, 2]
    ids = read_panoptic_png(tmp_path / "coco" / "panoptic" / "000001.png")
    np.testing.assert_array_equal(ids, store_labels(1))
    # the file scores itself perfectly through the panoptic evaluator
    from streamseg.eval.panoptic import evaluate_coco_panoptic

    json_path = tmp_path / "coco" / "panoptic.json"
    folder = tmp_path / "coco" / "panoptic"
    assert evaluate_coco_panoptic(json_path, folder, json_path, folder)["All"]["pq"] == 1.0


def test_without_dataset_the_vocabulary_gives_ids(store, tmp_path):
    export_store(store, tmp_path / "v", "vipseg", video_id="named")
    data = json.loads((tmp_path / "v" / "panoptic.json").read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
    assert data["videos"][0]["video_id"] == "named"
    frame2 = data["annotations"][0]["annotations"][2]["segments_info"]
    assert {s["id"]: s["category_id"] for s in frame2} == {1: 1, 2: 2, 5: 4}


def test_youtube_vis_and_png(store, tmp_path):
    export_store(store, tmp_path / "y", "youtube-vis", video_id="3")
    results = json.loads((tmp_path / "y" / "results.json").read_text())
    assert {r["video_id"] for r in results} == {3}
    assert [r["category_id"] for r in results] == [1, 4]  # thing tracks only: dog, kite
    kite = results[1]
    assert kite["segmentations"][:2] == [None, None]
    np.testing.assert_array_equal(decode_mask(kite["segmentations"][3]), store_labels(3) == 5)
    assert kite["score"] == pytest.approx(0.9)
    export_store(store, tmp_path / "p", "png")
    for t in range(4):
        ids = read_panoptic_png(tmp_path / "p" / "labels" / f"{t:06d}.png")
        np.testing.assert_array_equal(ids, store_labels(t))
    tracks = json.loads((tmp_path / "p" / "tracks.json").read_text())
    assert tracks["1"] == {"class": "dog", "category_id": 1, "is_thing": True}
    assert tracks["2"]["class"] == "grass" and tracks["2"]["is_thing"] is False


def test_category_map_override(store, tmp_path):
    categories = {c["id"]: c for c in CATEGORIES}
    summary = export_store(
        store, tmp_path / "m", "vipseg", categories, category_map={"kite": "cat", "dog": None}
    )
    assert summary["unmapped_classes"] == ["dog"]
    data = json.loads((tmp_path / "m" / "panoptic.json").read_text())
    frame2 = data["annotations"][0]["annotations"][2]["segments_info"]
    assert {s["id"]: s["category_id"] for s in frame2} == {2: 20, 5: 30}
    with pytest.raises(UserError, match="'horse' is not a class of the store"):
        export_store(store, tmp_path / "m", "vipseg", categories, category_map={"horse": 30})
    with pytest.raises(UserError, match="unknown category id 99"):
        export_store(store, tmp_path / "m", "vipseg", categories, category_map={"kite": 99})


def test_cli_export_and_eval_pred_store(store, tmp_path, capsys):
    gt_json = write_ground_truth(tmp_path)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"kite": None}))
    code = main(
        ["export", str(store), "--format", "vipseg", "--out", str(tmp_path / "o"),
         "--categories", str(gt_json), "--category-map", str(mapping), "--json"]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["unmapped_classes"] == ["kite"]
    code = main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(tmp_path / "gt"),
         "--pred-store", str(store), "--windows", "1,2", "--json"]
    )  # fmt: skip
    from_store = json.loads(capsys.readouterr().out)
    code = main(
        ["eval", "video", "--gt-json", str(gt_json), "--gt-dir", str(tmp_path / "gt"),
         "--pred-json", str(tmp_path / "o" / "panoptic.json"), "--pred-dir",
         str(tmp_path / "o" / "panomasks"), "--windows", "1,2", "--json"]
    )  # fmt: skip
    from_files = json.loads(capsys.readouterr().out)
    assert code == 0 and from_store["vpq"] == from_files["vpq"]
    assert from_store["stq"] == from_files["stq"]
    # a store that is not one, and a frame count that differs, are one-line errors
    code = main(["export", str(tmp_path / "nothing.zarr"), "--format", "png", "--out", "x"])
    assert code == 2 and "nothing.zarr" in capsys.readouterr().err
    short = make_store(tmp_path / "short.zarr", frames=3)
    with pytest.raises(UserError, match=r"short\.zarr: 3 frames, video 'clip'"):
        evaluate_store(short, gt_json, tmp_path / "gt")

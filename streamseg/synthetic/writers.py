"""Ground-truth writers: COCO panoptic (images), VIPSeg-style (videos), mp4.

COCO panoptic layout (https://cocodataset.org/#format-data, "panoptic segmentation"):
    OUT/images/NNNNNN.jpg, OUT/panoptic/NNNNNN.png, OUT/panoptic.json, OUT/captions.json
    (PNG pixel id = R + 256 G + 256^2 B; 0 would be unlabelled, the shapes world has none).
VIPSeg-style layout (Miao et al., CVPR 2022, as its `panoptic_gt_VIPSeg.json`):
    OUT/images/VIDEO/NNNNNN.jpg, OUT/panomasks/VIDEO/NNNNNN.png, OUT/videos/VIDEO.mp4,
    OUT/panoptic.json with {"videos": [{"video_id", "height", "width",
    "annotations": [{"image_id", "file_name", "segments_info"}]}], "categories"}; a thing's
    segment id is the same in every frame (its track), and `track_id` is given explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from streamseg.panoptic_png import write_panoptic_png
from streamseg.synthetic.categories import shapes_categories
from streamseg.synthetic.scene import Scene

JPEG_QUALITY = 95


def _save_image(image: np.ndarray, path: Path, image_format: str) -> None:
    if image_format == "jpg":
        Image.fromarray(image).save(path, quality=JPEG_QUALITY)
    else:
        Image.fromarray(image).save(path)


def _categories_json() -> list[dict]:
    return [c.to_coco() for c in shapes_categories()]


def write_coco_panoptic(
    out: str | Path, scenes: Iterable[Scene], image_format: str = "jpg"
) -> dict:
    """Write still scenes in COCO panoptic format (+ COCO-captions `captions.json`).

    Returns: the panoptic JSON written to OUT/panoptic.json.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    images, annotations, captions = [], [], []
    for index, scene in enumerate(scenes):
        stem = f"{index:06d}"
        height, width = scene.panoptic.shape
        _save_image(scene.image, out / "images" / f"{stem}.{image_format}", image_format)
        write_panoptic_png(out / "panoptic" / f"{stem}.png", scene.panoptic)
        images.append(
            {"id": index, "file_name": f"{stem}.{image_format}", "height": height, "width": width}
        )
        annotations.append(
            {
                "image_id": index,
                "file_name": f"{stem}.png",
                "segments_info": [s.to_coco() for s in scene.segments],
            }
        )
        captions.append({"id": index, "image_id": index, "caption": scene.caption})
    panoptic = {
        "info": {"description": "streamseg shapes world"},
        "images": images,
        "annotations": annotations,
        "categories": _categories_json(),
    }
    (out / "panoptic.json").write_text(json.dumps(panoptic))
    (out / "captions.json").write_text(json.dumps({"images": images, "annotations": captions}))
    return panoptic


def encode_mp4(frames: Iterable[np.ndarray], path: str | Path, fps: float = 12.0) -> None:
    """Encode (H, W, 3) uint8 frames as H.264 yuv420p mp4 (even sizes required by yuv420p)."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=int(round(fps)))
                stream.height, stream.width = image.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20", "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)


def write_vipseg(
    out: str | Path,
    videos: Iterable[tuple[str, list[Scene]]],
    image_format: str = "jpg",
    fps: float = 12.0,
    mp4: bool = True,
) -> dict:
    """Write videos VIPSeg-style: per video a folder of frames and of panoptic PNGs, one JSON.

    Args:
        videos: (video name, frames) pairs.

    Returns: the JSON written to OUT/panoptic.json.
    """
    out = Path(out)
    entries = []
    image_id = 0
    for name, frames in videos:
        (out / "images" / name).mkdir(parents=True, exist_ok=True)
        (out / "panomasks" / name).mkdir(parents=True, exist_ok=True)
        annotations = []
        for index, scene in enumerate(frames):
            stem = f"{index:06d}"
            _save_image(scene.image, out / "images" / name / f"{stem}.{image_format}", image_format)
            write_panoptic_png(out / "panomasks" / name / f"{stem}.png", scene.panoptic)
            annotations.append(
                {
                    "image_id": image_id,
                    "frame_index": index,
                    "file_name": f"{stem}.png",
                    "image_file_name": f"{stem}.{image_format}",
                    "caption": scene.caption,
                    "segments_info": [s.to_coco() for s in scene.segments],
                }
            )
            image_id += 1
        height, width = frames[0].panoptic.shape
        entries.append(
            {
                "video_id": name,
                "height": height,
                "width": width,
                "fps": fps,
                "annotations": annotations,
            }
        )
        if mp4:
            (out / "videos").mkdir(parents=True, exist_ok=True)
            encode_mp4((scene.image for scene in frames), out / "videos" / f"{name}.mp4", fps)
    data = {
        "info": {"description": "streamseg shapes world videos"},
        "videos": entries,
        "categories": _categories_json(),
    }
    (out / "panoptic.json").write_text(json.dumps(data))
    return data

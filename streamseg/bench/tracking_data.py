"""The tracking benchmark's videos and detections.

Videos are shapes-world videos from a seed (exact track ground truth). Each variant is a
scene kind and the frames a run processes:
- `plain`, `stride2`, `stride4`, `drops`: the same plain video, all frames, every 2nd, every
  4th, or a live run's drops (single frames dropped at random, and now and then a burst of
  frames lost as in a stall or a reconnect);
- `occlusion`: one thing hidden for `hidden_seconds`, longer than the old 30-frame memory;
- `cuts`: three shots of different videos spliced (synthetic/cuts.py);
- `crowd`: four extra things of one class crossing each other.

Detections come from two sources: the model's own segments (`model_detections`, what
`streamseg run` tracks), and oracle segments (`oracle_detections`: the ground-truth masks and
classes, each with the embedding the model gives a region: its dense CLIP features
mask-pooled inside the ground-truth mask), which measure association alone. Each comes in
two forms from one network pass (`Detections`): "marked", a segment whose mask covers no
cell of the stride-32 CLIP map has a zero embedding (appearance unknown, what the model gives
since issue 18 round 3), and "unmarked", the constant vector such a pooling gave before, so
that the tracker from before issue 18 is scored on the detections it was built for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from streamseg.model.outputs import FrameSegmentation, Segment

VARIANTS: dict[str, str] = {  # variant -> scene kind
    "plain": "plain",
    "stride2": "plain",
    "stride4": "plain",
    "drops": "plain",
    "occlusion": "occlusion",
    "cuts": "cuts",
    "crowd": "crowd",
}
CROWD_SIZE = 4  # things of one class crossing in the crowd videos
CUT_SHOTS = 3  # shots per cut video
DROP_SEED_STEP = 7  # the drop pattern's seed: the video's seed * this + 1 (not the scene's)


@dataclass(frozen=True)
class TrackingVideo:
    """One rendered video of a scene kind.

    Attributes:
        name: e.g. "plain-200000".
        scenes: the frames with exact ground truth (panoptic ids category * 1000 + track).
        cuts: frame indices where a new shot starts.
    """

    name: str
    scenes: list[Any]
    cuts: tuple[int, ...] = ()


@dataclass(frozen=True)
class Detections:
    """One video's detections, frame by frame, in both forms (module docstring).

    Attributes:
        marked: zero embedding rows where the appearance is unknown (today's model).
        unmarked: the same segments with the constant vector of an empty pooling there.
    """

    marked: list[FrameSegmentation]
    unmarked: list[FrameSegmentation]

    def form(self, marked: bool) -> list[FrameSegmentation]:
        return self.marked if marked else self.unmarked


def render_kind(kind: str, seed: int, frames: int, size: int, fps: float) -> TrackingVideo:
    """The video of scene kind `kind` ("plain", "occlusion", "cuts", "crowd") from `seed`."""
    from streamseg.synthetic.cuts import render_cut_video
    from streamseg.synthetic.video import VideoConfig, render_video

    config = replace(VideoConfig(), height=size, width=size, num_frames=frames)
    name = f"{kind}-{seed}"
    if kind == "plain":
        return TrackingVideo(name, render_video(seed, config))
    if kind == "occlusion":
        hidden = max(1, int(round(OCCLUSION_SECONDS * fps)))
        return TrackingVideo(name, render_video(seed, replace(config, hidden_frames=hidden)))
    if kind == "crowd":
        return TrackingVideo(name, render_video(seed, replace(config, crowd=CROWD_SIZE)))
    if kind == "cuts":
        video = render_cut_video(seed, config, shots=CUT_SHOTS)
        return TrackingVideo(name, video.scenes, video.cuts)
    raise ValueError(f"unknown scene kind {kind!r}")


# Hidden this long in the occlusion videos: at the benchmark's 12 fps, 42 frames, more than
# the old tracker's 30 processed frames.
OCCLUSION_SECONDS = 3.5


def processed_frames(variant: str, count: int, seed: int) -> list[int]:
    """Indices of the frames a run of `variant` processes out of `count`.

    `drops`: each frame is dropped with probability 0.25, and at each frame a burst of 6 to
    24 frames is lost with probability 0.02 (seeded by `seed`); the first frame is kept.
    """
    if variant in ("stride2", "stride4"):
        return list(range(0, count, int(variant[-1])))
    if variant != "drops":
        return list(range(count))
    rng = np.random.default_rng(seed * DROP_SEED_STEP + 1)
    kept, index = [], 0
    while index < count:
        if index == 0 or rng.random() >= 0.25:
            kept.append(index)
        if rng.random() < 0.02:
            index += int(rng.integers(6, 25))
        index += 1
    return kept


def category_maps(vocabulary: Any) -> tuple[list[int], dict[int, int]]:
    """(category id of each vocabulary class, {category id: class index}) for the shapes
    world's categories."""
    from streamseg.image_outputs import match_categories
    from streamseg.synthetic.categories import shapes_categories

    categories = [
        {"id": c.id, "name": c.name, "synonyms": list(c.synonyms)} for c in shapes_categories()
    ]
    ids = match_categories(vocabulary, categories, "the shapes world")
    return ids, {category: index for index, category in enumerate(ids)}


def oracle_segmentation(scene: Any, class_of: dict[int, int]) -> FrameSegmentation:
    """The ground truth of one frame as a segmentation (ids 1.. in ground-truth id order,
    score 1, no embeddings)."""
    keys = np.array([s.id for s in scene.segments], np.int64)
    position = np.searchsorted(keys, scene.panoptic)
    panoptic = (position + 1).astype(np.int32)
    segments = [
        Segment(
            id=i + 1,
            class_id=class_of[s.category_id],
            score=1.0,
            area=int(s.area),
            bbox=tuple(int(v) for v in s.bbox),
            is_thing=bool(s.isthing),
        )
        for i, s in enumerate(scene.segments)
    ]
    return FrameSegmentation(panoptic=panoptic, segments=segments)


def oracle_detections(
    scenes: Sequence[Any], class_of: dict[int, int], segmenter: Any = None, batch_size: int = 8
) -> Detections:
    """Oracle segmentations of `scenes`, with the model's region embeddings when a segmenter
    is given (else none, in both forms: association by masks and classes alone)."""
    frames = [oracle_segmentation(scene, class_of) for scene in scenes]
    if segmenter is None:
        return Detections(frames, frames)
    unmarked = []
    for start in range(0, len(frames), batch_size):
        batch = frames[start : start + batch_size]
        images = [scene.image for scene in scenes[start : start + batch_size]]
        pooled = region_embeddings(segmenter, images, [f.panoptic for f in batch])
        for frame, regions in zip(batch, pooled, strict=True):
            frame.embeddings = regions.marked
            unmarked.append(replace(frame, embeddings=regions.unmarked))
    return Detections(frames, unmarked)


@dataclass(frozen=True)
class RegionEmbeddings:
    """One frame's region embeddings, (N, D) float32, row i-1 for segment id i.

    Attributes:
        marked: zeros (appearance unknown) for a segment too small to cover a cell of the
            stride-32 map.
        unmarked: what the pooling gives there, one constant vector for every such segment
            (as before issue 18 round 2).
    """

    marked: np.ndarray
    unmarked: np.ndarray


def region_embeddings(
    segmenter: Any, images: Sequence[np.ndarray], panoptics: Sequence[np.ndarray]
) -> list[RegionEmbeddings]:
    """The model's embedding of each segment of given maps: its frozen CLIP's dense features
    (stride 32) of the image pooled inside the segment (`backbone.pool_masks`, the same
    pooling as the model's own segments), L2-normalized, in both forms.

    Args:
        images: B (H, W, 3) uint8 frames of one size; panoptics: B (H, W) ids 1..N_b.
    Returns:
        B `RegionEmbeddings`.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from streamseg.model.pooling import resize_masks

    model = segmenter.model
    height, width = images[0].shape[:2]
    in_h, in_w = segmenter.input_size(height, width)
    div = segmenter.config.size_divisibility
    pad_h, pad_w = -(-in_h // div) * div, -(-in_w // div) * div
    count = max(int(p.max()) for p in panoptics)
    batch = np.zeros((len(images), pad_h, pad_w, 3), np.uint8)
    masks = np.full((len(images), count, pad_h, pad_w), -1.0, np.float32)
    rows = (np.arange(in_h) * height // in_h)[:, None]
    cols = (np.arange(in_w) * width // in_w)[None, :]
    for b, (image, panoptic) in enumerate(zip(images, panoptics, strict=True)):
        if (in_h, in_w) != (height, width):
            image = np.asarray(Image.fromarray(image).resize((in_w, in_h), Image.BILINEAR))
        batch[b, :in_h, :in_w] = image
        resized = panoptic[rows, cols]
        for i in range(count):
            masks[b, i, :in_h, :in_w] = np.where(resized == i + 1, 1.0, -1.0)
    device = segmenter.device
    with torch.inference_mode():
        tensor = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2)
        dense = model.backbone(model.normalize(tensor))["clip_dense"]
        logits = torch.from_numpy(masks).to(device)
        pooled = model.backbone.pool_masks(dense, logits)
        pooled = F.normalize(pooled.float(), dim=-1)
        # A mask with no positive cell on the stride-32 map pools nothing: its row would be
        # one constant vector for every such segment, so it is given as unknown (zeros).
        seen = (resize_masks(logits, tuple(dense.shape[-2:])) > 0).flatten(2).any(-1)
        marked = (pooled * seen[..., None]).cpu().numpy()
        unmarked = pooled.cpu().numpy()
    return [
        RegionEmbeddings(marked[b, : int(p.max())], unmarked[b, : int(p.max())])
        for b, p in enumerate(panoptics)
    ]


def model_detections(segmenter: Any, scenes: Sequence[Any], batch_size: int = 8) -> Detections:
    """The model's segmentations of `scenes` at their size, filtered as `streamseg run`'s
    defaults filter them; "marked" equals `segmenter.segment`, "unmarked" is the same
    post-processing without FC-CLIP's per-query `valid` flag (every query's embedding counts).
    """
    import torch

    from streamseg.config import ModelSettings
    from streamseg.model.panoptic_batch import MaskSizes
    from streamseg.model.panoptic_frames import PanopticSettings, frame_segmentations
    from streamseg.video.segments import SegmentFilter

    model_settings = ModelSettings()
    keep = SegmentFilter(model_settings.score_threshold, model_settings.min_area, None)
    settings = PanopticSettings(
        is_thing=torch.tensor(list(segmenter.vocabulary.is_thing), device=segmenter.device),
        object_mask_threshold=segmenter.config.object_mask_threshold,
        overlap_threshold=segmenter.config.overlap_threshold,
    )
    size = tuple(scenes[0].image.shape[:2])
    marked: list[FrameSegmentation] = []
    unmarked: list[FrameSegmentation] = []
    for start in range(0, len(scenes), batch_size):
        images = [scene.image for scene in scenes[start : start + batch_size]]
        raw = segmenter.segment_raw(images)  # one size: one group, as `segment` makes it
        sizes = MaskSizes(raw["padded_sizes"][0], raw["image_sizes"][0], size)
        with torch.inference_mode():
            for valid, out in ((raw["valid"], marked), (None, unmarked)):
                frames = frame_segmentations(
                    raw["class_probs"],
                    raw["mask_logits"],
                    raw["embeddings"],
                    sizes,
                    settings,
                    valid,
                )
                out.extend(keep(s) for s in frames)
    return Detections(marked, unmarked)

"""The pipeline config of `streamseg run` / `run_video`: frozen nested dataclasses.

A TOML preset in pipelines/ (e.g. pipelines/default.toml) loads into exactly these classes,
one TOML table per section (`[model]`, `[decode]`, `[tracker]`, `[store]`, `[render]`,
`[live]`); CLI flags then override single fields (`with_overrides`). Unknown keys are an error,
so a typo in a preset is reported instead of silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from streamseg.dataclass_toml import from_dict, read_toml
from streamseg.errors import UserError


@dataclass(frozen=True)
class ModelSettings:
    """Which model runs, where, and how its output is filtered."""

    name: str | None = None  # model name or path (None = DEFAULT_MODEL of the segmenter)
    clip_weights: str | None = None  # open_clip weights for checkpoints without the CLIP
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "fp32"  # fp32 | tf32 (CUDA) | bf16 | fp16 (autocast)
    batch_size: int = 4  # frames per forward pass (also the commit block of the store)
    compile: bool = False  # run the network through torch.compile (Segmenter.compile)
    vocab: str | None = None  # CLI vocabulary syntax "person|people,car" or a dataset name
    stuff: str | None = None  # comma-separated names of the vocabulary that are stuff
    vocab_file: str | None = None  # class-name file (official id:name format or one per line)
    score_threshold: float = 0.0  # drop segments scoring below this
    min_area: int = 0  # drop segments smaller than this many label pixels
    keep: tuple[str, ...] = ()  # keep only these class names (empty = all)


@dataclass(frozen=True)
class DecodeSettings:
    """Which frames are read from the source."""

    stride: int = 1  # every stride-th frame
    start: float | None = None  # seconds from the first frame
    end: float | None = None  # seconds from the first frame (exclusive)
    max_frames: int | None = None  # stop after this many frames
    stream: int | None = None  # video stream number (None = the default one)
    queue_size: int = 8  # decoded frames buffered ahead of the model (bounded memory)


@dataclass(frozen=True)
class TrackerConfig:
    """How segments are linked into tracks (streamseg/video/track.py).

    Cost of pairing a live thing track with a thing segment:
    `iou_weight * (1 - mask IoU) + (1 - iou_weight) * cosine distance of embeddings
    + class_penalty * [segment class != track's voted class]`; pairs above `cost_limit` are left
    unassigned by the solver (lapx `lapjv(..., cost_limit=...)`).
    """

    iou_weight: float = 0.5  # share of (1 - IoU) in the cost; the rest is embedding distance
    class_penalty: float = 0.3  # added when a segment's class differs from the track's vote
    cost_limit: float = 0.6  # highest cost of an accepted match
    max_age: int = 30  # processed frames a thing track may stay unseen (max_age_seconds 0)
    embedding_momentum: float = 0.8  # share of the old embedding in a track's running mean
    # The fields below came with issue 18 (docs/TRACKING.md); a store that recorded a config
    # without them loads with these defaults; video/track.py: LEGACY_TRACKER turns them off.
    # Video time a thing track may stay unseen before it ends; 0 = count `max_age` processed
    # frames instead (the old rule: a stride or dropped frames changed the memory's length).
    # 6 s (round 3; 4 s before): objects that leave the view come back after 4.5-5.5 s.
    max_age_seconds: float = 6.0
    fallback_fps: float = 30.0  # frame time = index / this when a step is given no time
    # IoU also against the track's last box moved by its velocity (frame skips, fast motion):
    # the IoU term is the larger of the mask IoU and that predicted box IoU.
    motion: bool = True
    velocity_momentum: float = 0.5  # share of the old velocity in a track's running mean
    # A shot cut is a frame where fewer than this share of the pixels keep the class they had
    # in the previous processed frame: every thing track ends there. 0 = no cut detection.
    # 0.6 (round 3; 0.4 before): cuts measured up to 0.48 (one at 0.77), frames without a cut
    # down to 0.76 (oracle, 2 s drop) and 0.77 (model's class flicker, adjacent frames).
    cut_threshold: float = 0.6
    # Re-identification: segments and tracks left unassigned are assigned again on
    # `cosine distance + class_penalty * [class differs]` alone, up to this cost (a lost
    # track that comes back elsewhere). 0 = no second stage.
    reid_limit: float = 0.0
    # A zero embedding (a segment whose appearance is unknown: too small for the stride-32
    # CLIP map) leaves a pair's cost to its IoU alone (`1 - IoU` + class penalty) instead of
    # counting as a cosine distance of 1 (False: the rule before, which split such objects).
    unknown_appearance_neutral: bool = True
    # Re-identification by class: a track lost for at least one processed frame and left
    # unassigned takes the one unassigned segment of its class when it is the only lost track
    # of that class and their embeddings are within `reid_distance` (unknown: the class alone).
    reid_unique_class: bool = True
    reid_distance: float = 0.5
    # With `unknown_appearance_neutral`, both boxes grow by this share of the frame's longer
    # side before their overlap is taken: a sliver at the border touches its track's last box
    # without overlapping it (issue 18 round 3). 0 = the boxes as they are.
    unknown_box_margin: float = 0.02
    # Round 4 (video/track_leftovers.py), off by default: on held-out seeds they linked a track
    # across a cut the class agreement missed (docs/TRACKING.md); `video/track.py:
    # LEFTOVERS_TRACKER` turns them on with the measured values 0.2 / 0.5 / 0.8.
    # Tracks and segments the first assignment left apart are assigned again on mask IoU alone
    # (class, embedding and predicted box not looked at) where it is at least this: on the
    # model's segments one object's class, and its CLIP embedding with it, flickers between
    # frames. 0 = no such stage.
    geometry_match_iou: float = 0.0
    # A thing segment still unassigned with at least this share of its pixels inside the last
    # mask of a track assigned in this frame, of that track's class, is a second piece of that
    # object (the model now and then splits one object between two queries) and gets its
    # label. 0 = it starts a track of its own.
    piece_containment: float = 0.0
    # A track seen in the previous processed frame, unassigned now, whose last mask lies at
    # least this share inside a segment assigned to another track of its class was a piece of
    # that object: it ends. 0 = it stays.
    absorb_containment: float = 0.0
    # The three stages above look at neither class nor appearance: they run only in a frame
    # where at least this share of the pixels kept their class since the previous processed
    # frame, so not at most cuts that `cut_threshold` missed (not all: some keep more).
    # 0 = in every frame.
    leftover_agreement: float = 0.8


@dataclass(frozen=True)
class StoreSettings:
    """How the Zarr store is written."""

    label_scale: float = 1.0  # labels stored at this fraction of the upright source size
    compression_level: int = 3  # zstd level of the label chunks
    # Frames per shard file of the labels (Zarr v3 sharding; chunks stay one frame): a long
    # video makes T/shard files instead of T. 0 = no shards (one file per frame).
    frames_per_shard: int = 64  # = store.DEFAULT_FRAMES_PER_SHARD
    table_chunk: int = 4096  # rows per chunk of the 1-D table columns
    commit_frames: int = 16  # frames between commits (rounded up to whole batches)


@dataclass(frozen=True)
class RenderSettings:
    """The optional overlay video."""

    overlay: str | None = None  # output .mp4 (None = no overlay)
    alpha: float = 0.5  # colour share inside masks


@dataclass(frozen=True)
class LiveConfig:
    """How a live source is read (`streamseg run URL|DEVICE|- ...`; docs/LIVE.md).

    Applies to live sources only: a file run ignores it (and its store identity leaves it out).
    """

    live: bool | None = None  # drop stale frames; None = on for network / device, off for stdin
    max_latency: float = 2.0  # seconds a frame may wait before it is dropped (live mode)
    reconnect: bool = False  # reopen a stream that ends, stalls or fails
    reconnect_timeout: float = 30.0  # give up once the stream has been gone this long (s)
    open_timeout: float = 10.0  # seconds to wait for a connection
    read_timeout: float = 5.0  # seconds without data that count as a stall
    input_format: str | None = None  # FFmpeg format name (e.g. mpegts, matroska, v4l2)
    segment_duration: float | None = None  # roll over to a new store every N seconds
    max_frames: int | None = None  # stop after this many processed frames
    rtsp_transport: str | None = None  # "tcp" or "udp" for rtsp:// (None: FFmpeg's choice)
    # FFmpeg demuxer / protocol options passed through as given (--source-option KEY=VALUE);
    # they win over streamseg's own (probe size, timeouts, transport).
    source_options: dict[str, str] = field(default_factory=dict)
    # Without dropping (--no-live) a real-time source (URL, device) is still read as it comes:
    # decoded frames wait for the model in memory up to this many MiB, then the oldest are
    # dropped (counted, with a warning). Standard input is a pipe: it waits for the model.
    buffer_mib: float = 512.0


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what `run_video` produces (one TOML preset)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    store: StoreSettings = field(default_factory=StoreSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    live: LiveConfig = field(default_factory=LiveConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-able; tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def with_overrides(self, **sections: dict[str, Any]) -> RunConfig:
        """A copy with some fields replaced, e.g. `with_overrides(model={"batch_size": 2})`;
        None values are ignored (an unset CLI flag)."""
        changes = {}
        for name, values in sections.items():
            current = getattr(self, name)
            given = {key: value for key, value in values.items() if value is not None}
            changes[name] = _build(type(current), {**_fields(current), **given}, name)
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type] = {
    "model": ModelSettings,
    "decode": DecodeSettings,
    "tracker": TrackerConfig,
    "store": StoreSettings,
    "render": RenderSettings,
    "live": LiveConfig,
}


def run_config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a `RunConfig` from nested dicts (as read from TOML); unknown keys and values of
    the wrong type raise UserError (streamseg/dataclass_toml.py)."""
    return from_dict(RunConfig, data, source)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a pipeline preset (TOML) into a `RunConfig`; a name without a path looks in
    the package's pipelines/ folder (`default` -> pipelines/default.toml)."""
    path = resolve_pipeline(path)
    data = read_toml(path)
    # Training recipes share the folder: only the run sections are read here.
    run_part = {key: value for key, value in data.items() if key in SECTIONS}
    return run_config_from_dict(run_part, str(path))


def resolve_pipeline(path: str | Path) -> Path:
    """A pipeline file path, or a preset name in pipelines/."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.suffix == "" and candidate.parent == Path("."):
        repo = Path(__file__).resolve().parent.parent / "pipelines" / f"{candidate}.toml"
        if repo.is_file():
            return repo
    raise UserError(f"{path}: no such pipeline file")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """`with_overrides` checks the overridden fields as a preset's (unknown keys, types)."""
    return from_dict(cls, values, where)


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value

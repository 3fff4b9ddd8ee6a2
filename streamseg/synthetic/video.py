"""Videos of the shapes world: things move, turn, scale, occlude each other, leave the view
and come back, under a slowly panning camera. Track ids are the things' identities, so an
object that re-enters keeps its id.

Two options stress a tracker (both off by default, and then the videos are the same as
without them: they draw from random streams of their own):
- `hidden_frames`: one thing is not drawn for that many frames (a long occlusion) while it
  keeps moving, then comes back where its motion took it;
- `crowd`: that many extra things of one shared class start from both sides of a horizontal
  band and cross each other (same colour and shape: only where they are tells them apart).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from streamseg.synthetic.captions import write_caption
from streamseg.synthetic.scene import (
    Scene,
    SceneConfig,
    Thing,
    compose,
    render_stuff,
    sample_stuff_layout,
    sample_thing,
)


@dataclass(frozen=True)
class VideoConfig:
    """How videos are sampled."""

    height: int = 256  # frame height in pixels
    width: int = 256  # frame width in pixels
    num_frames: int = 48  # frames per video
    min_objects: int = 2  # things per video
    max_objects: int = 6
    max_pan: float = 0.5  # camera pan over the video, as a fraction of the width
    max_speed: float = 0.02  # thing speed, fraction of min(height, width) per frame
    max_spin: float = 0.08  # rotation speed, radians per frame
    max_pulse: float = 0.15  # relative amplitude of the size oscillation
    scene: SceneConfig = SceneConfig(min_radius=0.08, max_radius=0.18)
    hidden_frames: int = 0  # one thing is hidden this many frames, then back (0 = none)
    crowd: int = 0  # extra things of one class crossing each other (0 = none)


@dataclass
class _Motion:
    velocity_x: float
    velocity_y: float
    spin: float
    pulse: float
    pulse_rate: float
    base_radius: float
    bounds_x: tuple[float, float]
    bounds_y: tuple[float, float]


def _step(thing: Thing, motion: _Motion, frame: int) -> None:
    """Advance one frame: move, bounce on the motion bounds, turn and pulse."""
    thing.center_x += motion.velocity_x
    thing.center_y += motion.velocity_y
    low, high = motion.bounds_x
    if not low <= thing.center_x <= high:
        motion.velocity_x = -motion.velocity_x
        thing.center_x = min(max(thing.center_x, low), high)
    low, high = motion.bounds_y
    if not low <= thing.center_y <= high:
        motion.velocity_y = -motion.velocity_y
        thing.center_y = min(max(thing.center_y, low), high)
    thing.angle += motion.spin
    thing.radius = motion.base_radius * (1.0 + motion.pulse * math.sin(motion.pulse_rate * frame))


def iter_video(seed: int, config: VideoConfig = VideoConfig()) -> Iterator[Scene]:
    """Frames of one video with exact ground truth, deterministic from `seed`.

    Thing 1 (the "wanderer") is launched vertically so that it leaves the view through the
    top or bottom edge and comes back within the video; the others wander across a world
    wider than the view (bouncing beyond its edges), so they also leave and re-enter.
    """
    rng = np.random.default_rng(seed)
    height, width = config.height, config.width
    side = min(height, width)
    pan = config.max_pan * width * rng.uniform(0.3, 1.0)
    world_width = width + int(math.ceil(pan)) + 1
    pan_direction = 1.0 if rng.random() < 0.5 else -1.0
    camera_start = 0.0 if pan_direction > 0 else world_width - width - 1.0
    pan_speed = pan_direction * pan / max(config.num_frames - 1, 1)

    labels, names = sample_stuff_layout(rng, height, world_width, config.scene.max_stuff)
    stuff_image = render_stuff(rng, labels, names)

    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    things: list[Thing] = []
    motions: list[_Motion] = []
    for track_id in range(1, count + 1):
        thing = sample_thing(rng, track_id, height, world_width, config.scene)
        margin = 2.0 * thing.radius * (1.0 + config.max_pulse)
        speed = config.max_speed * side
        motion = _Motion(
            velocity_x=rng.uniform(-speed, speed),
            velocity_y=rng.uniform(-speed, speed),
            spin=rng.uniform(-config.max_spin, config.max_spin),
            pulse=rng.uniform(0, config.max_pulse),
            pulse_rate=rng.uniform(0.05, 0.3),
            base_radius=thing.radius,
            bounds_x=(-margin, world_width + margin),
            bounds_y=(-margin, height + margin),
        )
        if track_id == 1:
            # The wanderer rides with the camera and travels out of the view vertically:
            # it is fully outside once |y - edge| > 1.0 * radius * (1 + pulse), the bound is
            # 1.6 radii out, and the speed brings it back in at ~70% of the video.
            thing.center_x = camera_start + width * rng.uniform(0.3, 0.7)
            going_down = rng.random() < 0.5
            thing.center_y = height * (0.6 if going_down else 0.4)
            outside = 1.6 * thing.radius * (1.0 + config.max_pulse)
            path = (height - thing.center_y if going_down else thing.center_y) + 2.0 * outside
            motion.velocity_y = (1 if going_down else -1) * path / (0.7 * config.num_frames)
            motion.velocity_x = pan_speed
            motion.bounds_y = (-outside, height + outside)
            motion.bounds_x = (-1e9, 1e9)
        things.append(thing)
        motions.append(motion)
    # A random painting order, fixed for the video (z-order), so occlusions happen both ways.
    order = [int(i) for i in rng.permutation(count)]
    if config.crowd > 0:
        crowd_rng = np.random.default_rng([seed, 1])
        crowd, crowd_motions = _crowd(crowd_rng, config, count, camera_start, pan_speed)
        order += [count + int(i) for i in crowd_rng.permutation(len(crowd))]
        things += crowd
        motions += crowd_motions
    hidden: tuple[int, range] | None = None
    if config.hidden_frames > 0:
        hide_rng = np.random.default_rng([seed, 2])
        # Not the wanderer (it leaves the view anyway), unless it is alone.
        index = int(hide_rng.integers(1, count)) if count > 1 else 0
        start = int(config.num_frames * hide_rng.uniform(0.15, 0.3))
        hidden = (index, range(start, start + config.hidden_frames))
    for frame in range(config.num_frames):
        camera = camera_start + pan_speed * frame
        offset = int(round(camera))
        view_labels = labels[:, offset : offset + width]
        view_image = stuff_image[:, offset : offset + width]
        view_names = names
        drawn = [things[i] for i in order if hidden is None or not _hidden(hidden, i, frame)]
        image, panoptic, segments = compose(
            view_image, view_labels, view_names, drawn, offset_x=offset
        )
        yield Scene(
            image=image, panoptic=panoptic, segments=segments, caption=write_caption(segments, rng)
        )
        for thing, motion in zip(things, motions, strict=True):
            _step(thing, motion, frame + 1)


def _hidden(hidden: tuple[int, range], index: int, frame: int) -> bool:
    return index == hidden[0] and frame in hidden[1]


def _crowd(
    rng: np.random.Generator,
    config: VideoConfig,
    count: int,
    camera_start: float,
    pan_speed: float,
) -> tuple[list[Thing], list[_Motion]]:
    """`config.crowd` things of one class on a horizontal band, half starting on the left and
    half on the right of the view, each heading for the other side (track ids after the
    `count` others)."""
    height, width = config.height, config.width
    side = min(height, width)
    template = sample_thing(rng, 0, height, width, config.scene)
    band = height * rng.uniform(0.35, 0.65)
    radius = side * rng.uniform(0.07, 0.1)
    camera_end = camera_start + pan_speed * max(config.num_frames - 1, 0)
    low, high = min(camera_start, camera_end), max(camera_start, camera_end)
    things: list[Thing] = []
    motions: list[_Motion] = []
    for j in range(config.crowd):
        from_left = j % 2 == 0
        lane = j // 2
        x = width * (0.12 + 0.14 * lane if from_left else 0.88 - 0.14 * lane)
        speed = config.max_speed * side * rng.uniform(0.6, 1.0)
        thing = replace(
            template,
            track_id=count + 1 + j,
            center_x=camera_start + x,
            center_y=band + height * rng.uniform(-0.06, 0.06),
            radius=radius,
            angle=rng.uniform(0, 2 * math.pi),
        )
        margin = 2.0 * radius * (1.0 + config.max_pulse)
        things.append(thing)
        motions.append(
            _Motion(
                velocity_x=(speed if from_left else -speed) + pan_speed,
                velocity_y=speed * rng.uniform(-0.1, 0.1),
                spin=rng.uniform(-config.max_spin, config.max_spin),
                pulse=0.0,
                pulse_rate=0.1,
                base_radius=radius,
                # They bounce inside what the camera sees over the video, so they cross
                # again and again.
                bounds_x=(low + radius, high + width - radius),
                bounds_y=(margin, height - margin),
            )
        )
    return things, motions


def render_video(seed: int, config: VideoConfig = VideoConfig()) -> list[Scene]:
    """All frames of one video (see `iter_video`)."""
    return list(iter_video(seed, config))


def small_video_config(size: int = 96, num_frames: int = 24) -> VideoConfig:
    """A small, quick configuration (tests, previews)."""
    return replace(VideoConfig(), height=size, width=size, num_frames=num_frames)

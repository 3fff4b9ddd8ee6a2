"""Videos of the shapes world: things move, turn, scale, occlude each other, leave the view
and come back, under a slowly panning camera. Track ids are the things' identities, so an
object that re-enters keeps its id.
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
    order = rng.permutation(count)
    for frame in range(config.num_frames):
        camera = camera_start + pan_speed * frame
        offset = int(round(camera))
        view_labels = labels[:, offset : offset + width]
        view_image = stuff_image[:, offset : offset + width]
        view_names = names
        image, panoptic, segments = compose(
            view_image, view_labels, view_names, [things[i] for i in order], offset_x=offset
        )
        yield Scene(
            image=image, panoptic=panoptic, segments=segments, caption=write_caption(segments, rng)
        )
        for thing, motion in zip(things, motions, strict=True):
            _step(thing, motion, frame + 1)


def render_video(seed: int, config: VideoConfig = VideoConfig()) -> list[Scene]:
    """All frames of one video (see `iter_video`)."""
    return list(iter_video(seed, config))


def small_video_config(size: int = 96, num_frames: int = 24) -> VideoConfig:
    """A small, quick configuration (tests, previews)."""
    return replace(VideoConfig(), height=size, width=size, num_frames=num_frames)

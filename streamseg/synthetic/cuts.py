"""Videos with camera cuts: shots of different shapes-world videos spliced one after another.

Shot s (0, 1, ...) is the start of the video of seed `seed + s * CUT_SEED_STEP`; its things get
track ids `s * SHOT_TRACK_STEP + id`, so no identity continues across a cut even when two
shots show things of the same class. The stuff ids stay per class (stuff has no identity).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from streamseg.synthetic.categories import ID_FACTOR
from streamseg.synthetic.scene import Scene, segments_of
from streamseg.synthetic.video import VideoConfig, iter_video

CUT_SEED_STEP = 1_000_003  # seed distance between the shots of one video
SHOT_TRACK_STEP = 100  # track id offset per shot (ids stay below ID_FACTOR)


@dataclass(frozen=True)
class CutVideo:
    """A spliced video.

    Attributes:
        scenes: the frames with their ground truth.
        cuts: frame indices where a new shot starts (the first frame of each shot but the first).
    """

    scenes: list[Scene]
    cuts: tuple[int, ...]


def render_cut_video(seed: int, config: VideoConfig, shots: int = 3) -> CutVideo:
    """`config.num_frames` frames in `shots` shots of (nearly) equal length.

    Raises:
        ValueError: fewer than 1 shot, more shots than frames, or too many shots for the ids.
    """
    if shots < 1 or shots > config.num_frames:
        raise ValueError(f"{shots} shots for {config.num_frames} frames")
    if shots * SHOT_TRACK_STEP >= ID_FACTOR:
        raise ValueError(f"{shots} shots: track ids would reach {ID_FACTOR}")
    bounds = np.linspace(0, config.num_frames, shots + 1).round().astype(int)
    scenes: list[Scene] = []
    for shot in range(shots):
        length = int(bounds[shot + 1] - bounds[shot])
        frames = iter_video(seed + shot * CUT_SEED_STEP, replace(config, num_frames=length))
        scenes.extend(_renumbered(scene, shot * SHOT_TRACK_STEP) for scene in frames)
    return CutVideo(scenes=scenes, cuts=tuple(int(b) for b in bounds[1:-1]))


def _renumbered(scene: Scene, offset: int) -> Scene:
    if offset == 0:
        return scene
    panoptic = scene.panoptic.copy()
    things = panoptic % ID_FACTOR > 0
    panoptic[things] += offset
    return replace(scene, panoptic=panoptic, segments=segments_of(panoptic))

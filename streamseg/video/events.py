"""`--events`: a JSON-lines feed of what a live run sees, one line per processed frame.

Other programs read it from the pipe (`streamseg run URL --events | consumer`). Lines:
```
{"type": "frame", "store": "cam-0001.zarr", "row": 12, "index": 30, "time": 1.2, "pts": 108000,
 "latency": 0.41, "dropped": 17,
 "segments": [{"track_id": 3, "class_id": 0, "class": "person", "score": 0.91, "area": 812,
               "bbox": [4, 10, 20, 31], "is_thing": true}]}
{"type": "store", "store": "cam-0002.zarr", "first_index": 900}      (a rollover)
{"type": "end", "reason": "end of stream", "frames": 120, "dropped": 30}
```
`row` is the frame's row in its store, `index` its number among all decoded frames (gaps =
dropped frames), `time` its own timestamp in seconds, `latency` the seconds from its arrival
to the end of its segmentation, `dropped` the frames dropped so far in the run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO


def frame_event(
    *,
    store: str,
    row: int,
    index: int,
    time: float,
    pts: int | None,
    latency: float,
    dropped: int,
    rows: Sequence[tuple],
    names: Sequence[str],
) -> dict[str, Any]:
    """The event of one frame.

    Args:
        rows: the frame's segment rows in SEGMENT_COLUMNS order (frame, track_id, class_id,
            score, area, x, y, w, h, is_thing), as `pipeline.segment_rows` gives them.
        names: class names of the vocabulary.
    """
    segments = []
    for _, track_id, class_id, score, area, x, y, w, h, is_thing in rows:
        class_id = int(class_id)
        segments.append(
            {
                "track_id": int(track_id),
                "class_id": class_id,
                "class": names[class_id] if 0 <= class_id < len(names) else f"#{class_id}",
                "score": round(float(score), 4),
                "area": int(area),
                "bbox": [int(x), int(y), int(w), int(h)],
                "is_thing": bool(is_thing),
            }
        )
    return {
        "type": "frame",
        "store": store,
        "row": int(row),
        "index": int(index),
        "time": round(float(time), 6),
        "pts": None if pts is None else int(pts),
        "latency": round(float(latency), 4),
        "dropped": int(dropped),
        "segments": segments,
    }


class EventWriter:
    """Write events as JSON lines, flushed one by one (a reader sees each frame at once).

    A reader that goes away (broken pipe) ends the feed, not the run.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False
        self.lines = 0

    def write(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.stream.flush()
            self.lines += 1
        except (BrokenPipeError, ValueError, OSError):
            self.closed = True

"""Which memory format the network runs in (model/memory_format.py): channels_last only where it
was measured faster, the same segmentations either way up to float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamseg.model.default_vocab import default_vocabulary
from streamseg.model.embedded import DEFAULT_MODEL
from streamseg.model.memory_format import memory_format_of, prefers_channels_last
from streamseg.model.segmenter import Segmenter
from streamseg.synthetic.video import VideoConfig, iter_video


def test_the_rule_is_the_measured_table() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert prefers_channels_last("tiny-r50", cpu)
    for clip in ("tiny-convnext", "RN50", "convnext_large_d_320"):
        assert not prefers_channels_last(clip, cpu)
    assert not prefers_channels_last("tiny-r50", cuda)  # pending a GPU measurement


def test_memory_format_of_reads_the_weights() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.Conv2d(8, 8, 3))
    assert memory_format_of(model) == "contiguous"
    model.to(memory_format=torch.channels_last)
    assert memory_format_of(model) == "channels_last"
    assert memory_format_of(torch.nn.Linear(3, 4)) == "contiguous"


def test_segmenters_start_in_their_format() -> None:
    default = Segmenter.from_pretrained(DEFAULT_MODEL, device="cpu")
    assert default.config.clip_model == "tiny-r50"  # shapes-tiny, the measured case
    assert memory_format_of(default.model) == "channels_last"
    with pytest.warns(UserWarning, match="random weights"):
        other = Segmenter.from_pretrained("tiny-convnext")
    assert memory_format_of(other.model) == "contiguous"


def test_both_formats_segment_alike() -> None:
    segmenter = Segmenter.from_pretrained(DEFAULT_MODEL, device="cpu")
    segmenter.set_vocabulary(default_vocabulary(segmenter, DEFAULT_MODEL), cache_dir=None)
    config = VideoConfig(height=144, width=256, num_frames=4)
    frames = [scene.image for scene in iter_video(0, config)]
    results = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        segmenter.model.to(memory_format=layout)
        raw = segmenter.segment_raw(frames)
        results[layout] = (raw, segmenter.segment(frames))
    (raw_a, seg_a), (raw_b, seg_b) = results.values()
    assert torch.allclose(raw_a["class_probs"], raw_b["class_probs"], atol=1e-4)
    for a, b in zip(raw_a["mask_logits"], raw_b["mask_logits"], strict=True):
        assert torch.allclose(a, b, atol=1e-3)
    for a, b in zip(seg_a, seg_b, strict=True):
        # float rounding may move a pixel on a boundary between two masks, nothing more
        same = np.mean(np.asarray(a.panoptic) == np.asarray(b.panoptic))
        assert same > 0.999
        assert [s.class_id for s in a.segments] == [s.class_id for s in b.segments]

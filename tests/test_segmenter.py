"""`Segmenter`: presets, own-format folders, official checkpoints, batching, sizes, raw outputs."""

from __future__ import annotations

import pathlib
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from streamseg.errors import UserError
from streamseg.model.checkpoint import CLIP_PREFIX, save_folder
from streamseg.model.config import PRESETS
from streamseg.model.segmenter import (
    DEFAULT_MODEL,
    Segmenter,
    resize_shortest_edge,
    resize_uint8,
    resolve_device,
)

NUM_CLASSES = 4


def use_random_text(seg: Segmenter, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    index = torch.tensor([0, 0, 1, 2, 3, 3])
    text = SimpleNamespace(
        embeddings=F.normalize(
            torch.randn(6, seg.model.backbone.embed_dim, generator=generator), dim=-1
        ),
        class_index=index,
        num_classes=NUM_CLASSES,
    )
    vocabulary = SimpleNamespace(is_thing=[True, False, True, False])
    seg.set_text_classifier(vocabulary, text, seen=torch.tensor([True, True, False, False]))


def frames(sizes, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        image = np.zeros((h, w, 3), np.uint8)
        image[: h // 2] = (200, 40, 40)
        image[h // 2 :, : w // 2] = (30, 180, 60)
        image += rng.integers(0, 20, size=image.shape, dtype=np.uint8)
        out.append(image)
    return out


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    with pytest.warns(UserWarning, match="random weights"):
        segmenter = Segmenter.from_pretrained("tiny-convnext", device="cpu")
    use_random_text(segmenter)
    return segmenter


def check_consistent(result, size) -> None:
    assert result.panoptic.shape == size and result.panoptic.dtype == np.int32
    ids = [s.id for s in result.segments]
    assert ids == list(range(1, len(ids) + 1))
    assert set(np.unique(result.panoptic)) <= {0, *ids}
    assert result.embeddings.shape == (len(ids), 64) and result.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, rtol=1e-5)
    for s in result.segments:
        ys, xs = np.nonzero(result.panoptic == s.id)
        assert s.area == len(ys) > 0
        assert s.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        assert 0 <= s.class_id < NUM_CLASSES and 0 < s.score <= 1
        assert s.is_thing == [True, False, True, False][s.class_id]


def test_batch_equals_single_calls(seg) -> None:
    batch = frames([(64, 96), (80, 64), (64, 96)])
    together = seg.segment(batch)
    assert sum(len(r.segments) for r in together) > 0
    for frame, result in zip(batch, together, strict=True):
        check_consistent(result, frame.shape[:2])
        alone = seg.segment([frame])[0]
        np.testing.assert_array_equal(alone.panoptic, result.panoptic)
        # Batched matrix products may round differently in the last bit: scores to 1e-5.
        strip = [replace(s, score=0.0) for s in alone.segments]
        assert strip == [replace(s, score=0.0) for s in result.segments]
        np.testing.assert_allclose(
            [s.score for s in alone.segments], [s.score for s in result.segments], atol=1e-5
        )
        np.testing.assert_allclose(alone.embeddings, result.embeddings, atol=1e-5)


def test_tensor_input_and_output_size(seg) -> None:
    batch = frames([(64, 96), (64, 96)], seed=1)
    from_list = seg.segment(batch, output_size=(32, 48))
    from_tensor = seg.segment(torch.from_numpy(np.stack(batch)), output_size=(32, 48))
    # Views with negative strides (BGR -> RGB flips) are accepted as they are.
    from_views = seg.segment([f[..., ::-1].copy()[..., ::-1] for f in batch], output_size=(32, 48))
    for a, b, c in zip(from_list, from_tensor, from_views, strict=True):
        check_consistent(a, (32, 48))
        np.testing.assert_array_equal(a.panoptic, b.panoptic)
        np.testing.assert_array_equal(a.panoptic, c.panoptic)


def test_segment_raw(seg) -> None:
    raw = seg.segment_raw(frames([(64, 96), (70, 64)]))
    queries = seg.config.num_queries
    assert raw["in_vocab_logits"].shape == (2, queries, NUM_CLASSES + 1)
    assert raw["out_vocab_logits"].shape == (2, queries, NUM_CLASSES + 1)
    torch.testing.assert_close(raw["class_probs"].sum(-1), torch.ones(2, queries))
    assert raw["image_sizes"] == [(128, 192), (140, 128)]
    assert raw["padded_sizes"] == [(128, 192), (160, 128)]
    assert [tuple(m.shape) for m in raw["mask_logits"]] == [(queries, 32, 48), (queries, 40, 32)]


def test_input_size_is_detectron2_resize_shortest_edge(seg) -> None:
    assert seg.input_size(64, 96) == (128, 192)
    assert seg.input_size(100, 1000) == (26, 256)  # longest edge capped at 256
    assert resize_shortest_edge(480, 640, 800, 1333) == (800, 1067)
    assert resize_shortest_edge(1080, 1920, 800, 1333) == (750, 1333)
    assert resize_shortest_edge(750, 1333, 800, 1333) == (750, 1333)  # idempotent here
    assert resize_shortest_edge(123, 45, 0, 1333) == (123, 45)
    # Idempotent: frames decoded at the model size are not resized again.
    for h, w in [(480, 640), (720, 1280), (1080, 1920), (2160, 3840), (1920, 1080), (333, 777)]:
        size = resize_shortest_edge(h, w, 800, 1333)
        assert resize_shortest_edge(*size, 800, 1333) == size


def test_input_resize_is_pillows_within_one_level() -> None:
    """detectron2 resizes with Pillow's BILINEAR. `resize_uint8` (torch's uint8 antialiased
    path) rounds differently on a few pixels: at most 1 level, on under 1% of them on video
    frames (3% on uniform noise), none at integer factors. A deliberate deviation, for a
    resize ~10x faster (docs/ARCHITECTURE.md)."""
    import av
    from PIL import Image

    sample = pathlib.Path(__file__).resolve().parents[1] / "weights" / "shapes-tiny" / "sample.mp4"
    with av.open(str(sample)) as container:
        decoded = container.decode(video=0)
        pictures = [next(decoded).to_ndarray(format="rgb24") for _ in range(3)]
    big = np.kron(pictures[0], np.ones((4, 7, 1), np.uint8))  # 1024 x 1792, blocky edges
    noise = np.random.default_rng(0).integers(0, 256, (270, 480, 3), dtype=np.uint8)
    for picture, share in [*((p, 0.01) for p in (*pictures, big)), (noise, 0.03)]:
        for size in [(144, 256), (97, 53), (300, 411)]:
            want = np.asarray(Image.fromarray(picture).resize(size[::-1], Image.BILINEAR))
            diff = np.abs(resize_uint8(picture, size).astype(int) - want)
            assert diff.max() <= 1
            assert (diff > 0).mean() < share
    for size in [(128, 128), (512, 512)]:  # integer factors: the same pixels
        want = np.asarray(Image.fromarray(pictures[0]).resize(size[::-1], Image.BILINEAR))
        np.testing.assert_array_equal(resize_uint8(pictures[0], size), want)


def test_resize_off(seg) -> None:
    plain = Segmenter(model=seg.model, config=seg.config, device=torch.device("cpu"), name="tiny")
    plain.set_test_resize(96, 160)
    assert plain.input_size(70, 90) == (96, 123)
    plain.set_test_resize(0)
    use_random_text(plain)
    assert plain.input_size(70, 90) == (70, 90)
    raw = plain.segment_raw(frames([(70, 90)]))
    assert raw["image_sizes"] == [(70, 90)] and raw["padded_sizes"] == [(96, 96)]


def test_own_folder_round_trip(seg, tmp_path) -> None:
    save_folder(seg.model, seg.config, tmp_path / "full")
    loaded = Segmenter.from_pretrained(tmp_path / "full", device="cpu")
    assert loaded.config == seg.config
    for key, value in seg.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    use_random_text(loaded)
    batch = frames([(64, 64)])
    np.testing.assert_array_equal(loaded.segment(batch)[0].panoptic, seg.segment(batch)[0].panoptic)
    assert loaded.model_id.startswith("full@sha256:") and len(loaded.weights_sha256) == 64

    save_folder(seg.model, seg.config, tmp_path / "trained", include_clip=False)
    with pytest.raises(UserError, match="carries no CLIP weights"):
        Segmenter.from_pretrained(tmp_path / "trained", device="cpu")
    clip = {
        k[len(CLIP_PREFIX) :]: v
        for k, v in seg.model.state_dict().items()
        if k.startswith(CLIP_PREFIX)
    }
    torch.save(clip, tmp_path / "clip.bin")
    again = Segmenter.from_pretrained(
        tmp_path / "trained", clip_weights=tmp_path / "clip.bin", device="cpu"
    )
    assert torch.equal(again.model.void_embedding.weight, seg.model.void_embedding.weight)
    assert "+" in again.weights_sha256  # folder weights + CLIP file


def test_official_pth_with_clip_weights(seg, tmp_path) -> None:
    state = seg.model.state_dict()
    trained = {k: v for k, v in state.items() if not k.startswith(CLIP_PREFIX)}
    trained["criterion.empty_weight"] = torch.ones(NUM_CLASSES + 1)
    torch.save({"model": trained}, tmp_path / "model_final.pth")
    from safetensors.torch import save_file

    clip = {
        k[len(CLIP_PREFIX) :]: v.contiguous() for k, v in state.items() if k.startswith(CLIP_PREFIX)
    }
    save_file(clip, str(tmp_path / "open_clip_model.safetensors"))
    loaded = Segmenter.from_pretrained(
        tmp_path / "model_final.pth",
        config="tiny-convnext",
        clip_weights=tmp_path / "open_clip_model.safetensors",
        device="cpu",
    )
    for key, value in state.items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_bad_names_and_devices() -> None:
    with pytest.raises(UserError, match="no-such-model: no such file or folder"):
        Segmenter.from_pretrained("no-such-model", device="cpu")
    with pytest.raises(UserError, match="tpu: not a device"):
        Segmenter.from_pretrained("tiny-convnext", device="tpu")
    assert DEFAULT_MODEL in ("shapes-tiny", "tiny-convnext")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="cuda:1: CUDA is not available"):
            resolve_device("cuda:1")


def test_set_vocabulary_with_class_names(seg, tmp_path) -> None:
    pytest.importorskip("streamseg.model.vocab")
    classes = ["person, people", ["car", "automobile"], "red panda"]
    vocabulary = seg.set_vocabulary(classes, cache_dir=tmp_path)
    assert len(vocabulary) == 3
    assert [c.synonyms for c in vocabulary.classes] == [
        ("person", "people"),
        ("car", "automobile"),
        ("red panda",),
    ]
    assert seg._text.embeddings.shape == (5, 64)  # one row per synonym
    assert len(list(tmp_path.glob("*.safetensors"))) == 1  # cached on disk by model id
    first = seg._text.embeddings.clone()
    seg.set_vocabulary(classes, cache_dir=tmp_path)  # from the cache: same rows
    torch.testing.assert_close(seg._text.embeddings, first)
    result = seg.segment(frames([(64, 64)]))[0]
    assert all(0 <= s.class_id < 3 for s in result.segments)
    use_random_text(seg)  # restore for the other tests


def test_presets_round_trip_through_dicts() -> None:
    for config in PRESETS.values():
        assert type(config).from_dict(config.to_dict()) == config


def test_semantic_and_instance_outputs(seg) -> None:
    batch = frames([(64, 96)])
    labels = seg.segment_semantic(batch)[0]
    assert labels.shape == (64, 96) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < NUM_CLASSES
    instances = seg.segment_instances(batch, output_size=(32, 48))[0]
    assert instances.masks.shape[1:] == (32, 48)
    assert all(c in (0, 2) for c in instances.classes.tolist())  # thing classes only
    assert len(instances.scores) <= seg.config.instance_topk


def test_nothing_kept_gives_empty_segmentation(seg) -> None:
    strict = Segmenter(
        model=seg.model,
        config=replace(seg.config, object_mask_threshold=1.0),
        device=torch.device("cpu"),
        name="tiny",
    )
    use_random_text(strict)
    result = strict.segment(frames([(64, 64)]))[0]
    assert result.segments == [] and not result.panoptic.any()
    assert result.embeddings.shape == (0, 64)


def test_segment_equals_official_order_reference(seg) -> None:
    from streamseg.model.postprocess import class_logits_from_probs, panoptic_inference

    batch = frames([(64, 96), (80, 64)], seed=3)
    raw = seg.segment_raw(batch)
    results = seg.segment(batch, output_size=(50, 70))
    assert sum(len(r.segments) for r in results) > 0
    for i, result in enumerate(results):
        # Official: all queries upsampled to the padded size, cropped, resized, then inference.
        h, w = raw["image_sizes"][i]
        masks = F.interpolate(
            raw["mask_logits"][i][None], size=raw["padded_sizes"][i], mode="bilinear"
        )[:, :, :h, :w]
        masks = F.interpolate(masks, size=(50, 70), mode="bilinear")[0]
        mask_cls = class_logits_from_probs(raw["class_probs"][i])
        panoptic, segments = panoptic_inference(
            mask_cls, masks, torch.tensor([True, False, True, False]), 0.0, 0.8
        )
        np.testing.assert_array_equal(result.panoptic, panoptic.numpy())
        assert [s.class_id for s in result.segments] == [s.class_id for s in segments]
        for segment, reference in zip(result.segments, segments, strict=True):
            want = F.normalize(raw["embeddings"][i][list(reference.queries)].mean(0), dim=-1)
            np.testing.assert_allclose(result.embeddings[segment.id - 1], want.numpy(), atol=1e-6)

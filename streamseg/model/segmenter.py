"""`Segmenter`: the FC-CLIP image model as a user calls it.

    seg = Segmenter.from_pretrained("fcclip-convnext-large.pth", clip_weights="clip.safetensors")
    seg.set_vocabulary(["person", "dog,puppy", ["red kite", "kite"]])
    results = seg.segment(frames)            # list[FrameSegmentation], one per frame

Inference follows the official FC-CLIP order: test-time resize (shortest edge 800, longest at
most 1333; PIL bilinear like detectron2's ResizeShortestEdge), normalize, zero-pad to /32,
network, out-of-vocabulary branch, geometric ensemble, mask logits upsampled to the padded size,
cropped, resized to the output size, panoptic inference. Frames are grouped by padded size so a
batch gives the same result as single calls. `segment_raw` returns the per-query outputs.
`compile()` optionally runs the network through `torch.compile` (off by default).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamseg.errors import UserError
from streamseg.model import checkpoint
from streamseg.model.backbone import build_tokenizer
from streamseg.model.config import PRESETS, FCCLIPConfig, get_preset, unknown_model_error
from streamseg.model.default_vocab import folder_default_vocabulary
from streamseg.model.embedded import DEFAULT_MODEL, find_model_folder  # also imported from here
from streamseg.model.fcclip import FCCLIP, build_model
from streamseg.model.memory_format import prefers_channels_last
from streamseg.model.network_outputs import NetworkOutputs
from streamseg.model.outputs import FrameSegmentation
from streamseg.model.panoptic_batch import MaskSizes
from streamseg.model.panoptic_frames import PanopticSettings, frame_segmentations
from streamseg.model.postprocess import (
    Instances,
    class_logits_from_probs,
    instance_inference,
    resize_mask_logits,
    semantic_inference,
)

if TYPE_CHECKING:  # pragma: no cover
    from streamseg.model.text_classifier import TextClassifier
    from streamseg.model.vocab import Vocabulary

# `torch.compile` modes `Segmenter.compile` accepts (torch's own list).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> cuda, else mps, else cpu; "cpu", "cuda", "cuda:N", "mps" as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"{device}: not a device (auto, cpu, cuda, cuda:N, mps)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{device}: CUDA is not available on this machine")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise UserError(f"{device}: only {torch.cuda.device_count()} CUDA devices here")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{device}: MPS is not available on this machine")
    return resolved


def resize_shortest_edge(
    height: int, width: int, short_edge: int, max_size: int
) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge output size; short_edge <= 0 = no resize."""
    if short_edge <= 0:
        return height, width
    scale = short_edge / min(height, width)
    if height < width:
        new_h, new_w = float(short_edge), scale * width
    else:
        new_h, new_w = scale * height, float(short_edge)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_uint8(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bilinear resize of an (H, W, 3) uint8 picture to `size` (h, w).

    detectron2 (and so the official FC-CLIP) resizes with Pillow's BILINEAR; torch's uint8
    antialiased path implements the same filter on all the CPU's threads, ~10x faster at
    1080p on the 2-core machine. It rounds differently on a few pixels: at most 1 level, on
    under 1% of them (tests/test_segmenter.py), far below the input's own coding noise.
    """
    array = np.ascontiguousarray(frame)
    if not array.flags.writeable:  # torch warns on read-only memory (it is only read here)
        array = array.copy()
    image = torch.from_numpy(array).permute(2, 0, 1)[None]
    resized = F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].permute(1, 2, 0).contiguous().numpy()


@dataclass(frozen=True)
class _DeviceText:
    """The text classifier's tensors, moved to the model's device once."""

    embeddings: Tensor
    class_index: Tensor
    num_classes: int


def _as_frames(frames: Any) -> list[np.ndarray]:
    """(H, W, 3) uint8 arrays from a list of arrays/tensors or a (B, H, W, 3) uint8 tensor."""
    if isinstance(frames, Tensor):
        frames = (
            list(frames.detach().cpu().numpy()) if frames.dim() == 4 else [frames.cpu().numpy()]
        )
    elif isinstance(frames, np.ndarray):
        frames = list(frames) if frames.ndim == 4 else [frames]
    out = []
    for frame in frames:
        array = frame.detach().cpu().numpy() if isinstance(frame, Tensor) else np.asarray(frame)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {array.shape} {array.dtype}")
        out.append(array)
    return out


class Segmenter:
    """Open-vocabulary panoptic segmentation of images with FC-CLIP.

    Build with `from_pretrained`; set classes with `set_vocabulary`; call `segment`.
    """

    def __init__(
        self,
        *,
        model: FCCLIP,
        config: FCCLIPConfig,
        device: torch.device,
        name: str,
        weight_files: tuple[Path, ...] = (),
    ) -> None:
        self.model = model.to(device).eval()
        if prefers_channels_last(config.clip_model, device):
            # Faster convolutions for this model on this device, same outputs up to float
            # rounding (model/memory_format.py).
            self.model.to(memory_format=torch.channels_last)
        self.config = config
        self.device = device
        self.name = name
        self._weight_files = weight_files
        self._sha256: str | None = None
        self._tokenizer = build_tokenizer(config.clip_model, config.clip_config)
        self._vocabulary: Vocabulary | None = None
        self._text: _DeviceText | None = None
        self._seen: Tensor | None = None
        self._is_thing: Tensor | None = None
        # The vocabulary its model folder names (streamseg/model/default_vocab.py); used by the
        # front ends when the user gives none. None for presets and official checkpoints.
        self.default_vocabulary: Vocabulary | None = None
        # The network's inference call: `model.predict`, or its torch.compile'd form.
        self._predict: Callable[..., dict[str, Tensor]] = self.model.predict
        self._compile_mode: str | None = None
        self._largest_batch = 0  # under torch.compile: batches are padded to this many rows
        if self.device.type == "cuda":
            # Frames of a video share one input size: let cuDNN pick its fastest kernels once.
            torch.backends.cudnn.benchmark = True

    # ----------------------------------------------------------------------------- building
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        config: FCCLIPConfig | str | None = None,
        clip_weights: str | Path | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
    ) -> Segmenter:
        """A segmenter from a preset name, an own-format folder, or an official `.pth`.

        Args:
            name_or_path: a preset in `PRESETS` (random weights, seeded, with a warning), the
                name of an embedded model (weights/<name>/), a folder with config.json +
                model.safetensors, or an official FC-CLIP checkpoint (detectron2 `.pth`).
            config: an `FCCLIPConfig` or preset name; for an official `.pth` it defaults to the
                official preset matching the file's widths; for a folder, the folder's config.
            clip_weights: open_clip weights file for the CLIP when the checkpoint has none.
            device: "auto", "cpu", "cuda", "cuda:N" or "mps".
            seed: RNG seed of the random initialization (presets only).
        """
        resolved = resolve_device(device)
        default_vocabulary = None
        if isinstance(config, str):
            config = get_preset(config)
        name = str(name_or_path)
        path = Path(name_or_path)
        folder = find_model_folder(name) if not path.exists() else None
        if path.is_dir() or folder is not None:
            folder = path if path.is_dir() else folder
            folder_config, _ = checkpoint.read_folder_config(folder)
            default_vocabulary = folder_default_vocabulary(folder)
            config = config or folder_config
            model = _build_seeded(config, seed)
            checkpoint.load_folder_weights(model, folder, clip_weights)
            files = (folder / checkpoint.WEIGHTS_FILE,)
            label = folder.name
        elif path.is_file():
            state = checkpoint.read_state_dict(path)  # read once: files can be gigabytes
            config = config or checkpoint.infer_official_config(path, state)
            model = _build_seeded(config, seed)
            checkpoint.load_official_checkpoint(model, path, clip_weights, state)
            del state
            files = (path,)
            label = path.stem
        elif name in PRESETS:
            config = config or PRESETS[name]
            model = _build_seeded(config, seed)
            if clip_weights is not None:
                checkpoint.load_clip_weights(model, clip_weights)
            warnings.warn(
                f"{name}: random weights (seed {seed}) - a preset without trained weights; "
                "its segmentations are meaningless",
                UserWarning,
                stacklevel=2,
            )
            files = (Path(clip_weights),) if clip_weights is not None else ()
            label = f"{name}-random-seed{seed}"
        else:
            raise unknown_model_error(name)
        if clip_weights is not None and Path(clip_weights) not in files:
            files = (*files, Path(clip_weights))
        segmenter = cls(model=model, config=config, device=resolved, name=label, weight_files=files)
        segmenter.default_vocabulary = default_vocabulary
        return segmenter

    # ----------------------------------------------------------------------------- properties
    @property
    def weights_sha256(self) -> str:
        """sha256 of the weight files ("+"-joined), or of the tensors for random weights."""
        if self._sha256 is None:
            if self._weight_files and "-random-seed" not in self.name:
                self._sha256 = "+".join(checkpoint.file_sha256(p) for p in self._weight_files)
            else:
                digest = hashlib.sha256()
                for key, value in self.model.state_dict().items():
                    digest.update(key.encode())
                    digest.update(value.detach().cpu().contiguous().numpy().tobytes())
                self._sha256 = digest.hexdigest()
        return self._sha256

    @property
    def model_id(self) -> str:
        """Model name and weights sha256, for provenance records."""
        return f"{self.name}@sha256:{self.weights_sha256}"

    @property
    def vocabulary(self) -> Vocabulary | None:
        """The current vocabulary (None before `set_vocabulary`)."""
        return self._vocabulary

    @property
    def compile_mode(self) -> str | None:
        """The `torch.compile` mode of the network, or None when it runs eagerly."""
        return self._compile_mode

    # ----------------------------------------------------------------------------- vocabulary
    def set_vocabulary(self, classes: Any, cache_dir: str | Path | None = "auto") -> Vocabulary:
        """Set the classes and compute (once) their text classifier.

        Args:
            classes: a `Vocabulary`; a CLI-syntax string ("person|people,car" or a dataset
                name); or a list whose items are a class name (commas inside split synonyms,
                as the official class files) or a list of synonyms. Classes from a list are
                things; use a `Vocabulary` to declare stuff.
            cache_dir: folder of cached text classifiers (keyed by `model_id`, synonyms and
                templates); "auto" = $STREAMSEG_CACHE/text or ~/.cache/streamseg/text;
                None = no disk cache. The classifier stays cached in the segmenter either way.
        """
        from streamseg.model.text_classifier import build_text_classifier
        from streamseg.model.vocab import VocabClass, Vocabulary, parse_vocab

        if isinstance(classes, str):
            vocabulary = parse_vocab(classes)
        elif isinstance(classes, Vocabulary):
            vocabulary = classes
        else:
            items = []
            for item in classes:
                if isinstance(item, str):
                    synonyms = [s.strip() for s in item.replace(", ", ",").split(",") if s.strip()]
                else:
                    synonyms = [str(s).strip() for s in item if str(s).strip()]
                if not synonyms:
                    raise UserError(f"{item!r}: a class needs at least one name")
                items.append(VocabClass(name=synonyms[0], synonyms=tuple(synonyms)))
            vocabulary = Vocabulary(classes=tuple(items))
        if cache_dir == "auto":
            from streamseg.model.text_classifier import default_cache_dir

            cache_dir = default_cache_dir()
        text = build_text_classifier(
            self.model.backbone.encode_text,
            self._tokenizer,
            vocabulary,
            self.device,
            cache_dir=cache_dir,
            cache_key=self.model_id if cache_dir is not None else None,
        )
        self.set_text_classifier(vocabulary, text)
        return vocabulary

    def encode_texts(self, names: Sequence[str]) -> Tensor:
        """Text vectors of `names` in CLIP's joint space, as a class name gets them (every
        prompt template, averaged): (n, D) float32 L2-normalized, comparable with segment
        embeddings."""
        from streamseg.model.text_classifier import encode_synonyms

        with torch.inference_mode():
            return encode_synonyms(
                self.model.backbone.encode_text, self._tokenizer, list(names), self.device
            )

    def set_text_classifier(
        self, vocabulary: Vocabulary, text: TextClassifier, seen: Tensor | None = None
    ) -> None:
        """Use a ready text classifier (e.g. from training code); `seen` (C,) bool defaults to
        the overlap of the vocabulary's synonyms with `config.train_vocabulary`."""
        if seen is None:
            from streamseg.model.vocab import seen_classes

            seen = seen_classes(vocabulary, set(self.config.train_vocabulary))
        self._vocabulary = vocabulary
        self._text = _DeviceText(
            embeddings=text.embeddings.to(self.device, torch.float32),
            class_index=text.class_index.to(self.device),
            num_classes=int(text.num_classes),
        )
        self._seen = torch.as_tensor(seen, dtype=torch.bool, device=self.device)
        self._is_thing = torch.tensor(
            list(vocabulary.is_thing), dtype=torch.bool, device=self.device
        )

    # ----------------------------------------------------------------------------- inference
    def set_test_resize(self, short_edge: int, max_size: int | None = None) -> None:
        """Change the test-time resize: shortest edge to `short_edge` (0 = off, inputs used at
        their own size), longest at most `max_size` (unchanged when None)."""
        if short_edge < 0 or (max_size is not None and max_size <= 0):
            raise UserError(f"test resize {short_edge}/{max_size}: sizes must be positive")
        changes: dict[str, int] = {"test_short_edge": int(short_edge)}
        if max_size is not None:
            changes["test_max_size"] = int(max_size)
        self.config = replace(self.config, **changes)

    def set_ensemble(self, alpha: float, beta: float) -> None:
        """Change the geometric ensemble's out-of-vocabulary exponents: `alpha` for seen
        classes, `beta` for unseen ones (0 = in-vocabulary only, 1 = out-of-vocabulary only)."""
        if not (0.0 <= alpha <= 1.0 and 0.0 <= beta <= 1.0):
            raise UserError(f"ensemble alpha {alpha}, beta {beta}: both must be in [0, 1]")
        self.config = replace(self.config, ensemble_alpha=float(alpha), ensemble_beta=float(beta))

    def compile(self, mode: str = "default") -> None:
        """Run the network through `torch.compile` from now on (optional; eager by default).

        Compiled: `FCCLIP.predict`, i.e. backbone, pixel decoder, transformer decoder,
        out-of-vocabulary mask pooling and ensemble (tensors only), on whatever device the
        segmenter is on. Pre-processing and panoptic post-processing stay eager Python. The
        compile itself happens at the first call (and again when a new input shape or batch
        size arrives; torch.compile's default dynamic-shape handling then makes the changing
        sizes symbolic, so a video, whose frames share one size, compiles once or twice).
        Results equal the eager ones within float rounding. Calling it again with the same
        mode does nothing; another mode recompiles.

        Args:
            mode: a `torch.compile` mode (`COMPILE_MODES`); the CUDA-graph modes
                ("reduce-overhead", "max-autotune") only pay off on CUDA.

        Raises:
            UserError: an unknown mode, or torch.compile unavailable here (raised by the
                first segment call when compiling fails, e.g. without a C++ compiler).
        """
        if mode not in COMPILE_MODES:
            raise UserError(f"compile mode {mode!r}: not one of {', '.join(COMPILE_MODES)}")
        if mode == self._compile_mode:
            return
        try:
            compiled = torch.compile(self.model.predict, mode=mode)
        except RuntimeError as error:  # e.g. a Python version dynamo does not support
            raise UserError(f"--compile: torch.compile is not available here ({error})") from None
        # CUDA graphs reuse their output memory on the next replay: the outputs of one padded
        # size group must survive the next group's call, so those modes copy them out.
        copy_outputs = mode in ("reduce-overhead", "max-autotune")
        self._predict = _guard_compiled(compiled, copy_outputs)
        self._compile_mode = mode

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Model input size of a (height, width) frame under the test-time resize."""
        return resize_shortest_edge(
            height, width, self.config.test_short_edge, self.config.test_max_size
        )

    def _resized(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (h, w, 3) uint8 at the model input size (`resize_uint8`)."""
        height, width = frame.shape[:2]
        size = self.input_size(height, width)
        if size != (height, width):
            frame = resize_uint8(frame, size)
        return frame

    def _upload(self, frames: list[np.ndarray]) -> Tensor:
        """Frames of one input size, (h, w, 3) uint8 each -> (B, 3, h, w) normalized float32
        on the device: one stacked host buffer (pinned on CUDA) and one non-blocking copy
        instead of one synchronous copy per frame from pageable memory."""
        host = torch.from_numpy(np.stack(frames))  # a copy: inputs may be read-only views
        if self.device.type == "cuda":
            host = host.pin_memory()
        images = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        return self.model.normalize(images)

    def _padded_batch(self, count: int) -> int:
        """Rows of the network's batch: `count`, or under torch.compile the largest batch seen
        so far, so that a ragged last batch reuses the compiled graph instead of compiling
        another (the extra rows are zeros and their outputs are dropped)."""
        if self._compile_mode is None:
            return count
        self._largest_batch = max(self._largest_batch, count)
        return self._largest_batch

    def _groups(self, frames: list[np.ndarray]) -> dict[tuple[int, int], list[int]]:
        """Frame indices grouped by padded input size."""
        groups: dict[tuple[int, int], list[int]] = {}
        div = self.config.size_divisibility
        for i, frame in enumerate(frames):
            h, w = self.input_size(*frame.shape[:2])
            padded = (-(-h // div) * div, -(-w // div) * div)
            groups.setdefault(padded, []).append(i)
        return groups

    @torch.inference_mode()
    def _run(self, frames: list[np.ndarray]) -> list[dict[str, Any]]:
        if self._text is None:
            raise RuntimeError("call set_vocabulary(...) before segmenting")
        results: list[dict[str, Any]] = [{} for _ in frames]
        for padded, indices in self._groups(frames).items():
            resized = [self._resized(frames[i]) for i in indices]
            by_size: dict[tuple[int, int], list[int]] = {}
            for j, image in enumerate(resized):
                by_size.setdefault(image.shape[:2], []).append(j)
            batch = torch.zeros((self._padded_batch(len(indices)), 3, *padded), device=self.device)
            image_sizes: list[tuple[int, int]] = [(0, 0)] * len(indices)
            for (height, width), rows in by_size.items():
                uploaded = self._upload([resized[j] for j in rows])
                # Row by row: indexing a device tensor by a Python list copies the list over
                # with a blocking copy, which waits for the device's queue.
                for k, j in enumerate(rows):
                    batch[j, :, :height, :width] = uploaded[k]
                    image_sizes[j] = (height, width)
            out = self._predict(
                batch,
                self._text,
                self._seen,
                self.config.ensemble_alpha,
                self.config.ensemble_beta,
                self.config.ensemble_on_valid_mask,
            )
            for j, i in enumerate(indices):
                results[i] = {key: value[j] for key, value in out.items()}
                results[i]["image_size"] = image_sizes[j]
                results[i]["padded_size"] = padded
        return results

    def segment_raw(self, frames: Any) -> dict[str, Any]:
        """Per-query outputs for comparison with other implementations.

        Returns:
            "in_vocab_logits" (B, Q, C+1), "out_vocab_logits" (B, Q, C+1) (last = void),
            "class_probs" (B, Q, C+1) ensembled probabilities, "embeddings" (B, Q, D)
            normalized region CLIP embeddings, "valid" (B, Q); "mask_logits": list of
            (Q, Hp/4, Wp/4) per frame (stride 4 of the padded input); "image_sizes" and
            "padded_sizes": per frame (h, w) model input size before / after padding.
        """
        results = self._run(_as_frames(frames))
        stacked = {
            key: torch.stack([r[key] for r in results])
            for key in ("in_vocab_logits", "out_vocab_logits", "class_probs", "embeddings", "valid")
        }
        stacked["mask_logits"] = [r["mask_logits"] for r in results]
        stacked["image_sizes"] = [r["image_size"] for r in results]
        stacked["padded_sizes"] = [r["padded_size"] for r in results]
        return stacked

    def segment(
        self, frames: Any, output_size: tuple[int, int] | None = None
    ) -> list[FrameSegmentation]:
        """Panoptic segmentation of a batch of frames.

        Args:
            frames: list of (H, W, 3) uint8 RGB arrays/tensors or a (B, H, W, 3) uint8 tensor.
            output_size: (H, W) of the results; default each frame's own size.

        Returns:
            one `FrameSegmentation` per frame (panoptic ids 1.., segments, and each segment's
            L2-normalized mask-pooled CLIP embedding; a merged stuff segment gets the normalized
            mean of its queries' embeddings).
        """
        return self.segment_outputs(self.run_network(frames), output_size)

    def run_network(self, frames: Any) -> NetworkOutputs:
        """The first half of `segment`: the network's outputs for a batch of frames."""
        frame_list = _as_frames(frames)
        sizes = [(int(f.shape[0]), int(f.shape[1])) for f in frame_list]
        return NetworkOutputs(self._run(frame_list), sizes)

    def segment_outputs(
        self, outputs: NetworkOutputs, output_size: tuple[int, int] | None = None
    ) -> list[FrameSegmentation]:
        """The second half of `segment`: panoptic post-processing of `run_network`'s outputs,
        at `output_size` (default each frame's own size)."""
        sizes = [
            (int(output_size[0]), int(output_size[1])) if output_size is not None else size
            for size in outputs.frame_sizes
        ]
        return self._panoptic(outputs.frames, sizes)

    def segment_semantic(
        self, frames: Any, output_size: tuple[int, int] | None = None
    ) -> list[np.ndarray]:
        """Semantic segmentation (official semantic inference, then argmax over classes).

        Returns:
            per frame an (H, W) int32 class-index map at the frame size or `output_size`.
        """
        frame_list = _as_frames(frames)
        outputs = []
        for frame, raw in zip(frame_list, self._run(frame_list), strict=True):
            size = tuple(output_size) if output_size is not None else frame.shape[:2]
            masks = resize_mask_logits(
                raw["mask_logits"], raw["padded_size"], raw["image_size"], size
            )
            scores = semantic_inference(class_logits_from_probs(raw["class_probs"]), masks)
            outputs.append(scores.argmax(0).to(torch.int32).cpu().numpy())
        return outputs

    def segment_instances(
        self, frames: Any, output_size: tuple[int, int] | None = None
    ) -> list[Instances]:
        """Instance segmentation (official instance inference: top-k (query, class) pairs over
        thing classes, score = class score x mean mask probability).

        Returns:
            per frame an `Instances` (masks (K, H, W) bool, scores, classes, queries) on the
            segmenter's device.
        """
        frame_list = _as_frames(frames)
        outputs = []
        for frame, raw in zip(frame_list, self._run(frame_list), strict=True):
            size = tuple(output_size) if output_size is not None else frame.shape[:2]
            masks = resize_mask_logits(
                raw["mask_logits"], raw["padded_size"], raw["image_size"], size
            )
            outputs.append(
                instance_inference(
                    class_logits_from_probs(raw["class_probs"]),
                    masks,
                    self._is_thing,
                    self.config.instance_topk,
                )
            )
        return outputs

    @torch.inference_mode()
    def _panoptic(
        self, raws: list[dict[str, Any]], output_sizes: list[tuple[int, int]]
    ) -> list[FrameSegmentation]:
        """Batched panoptic post-processing (streamseg/model/panoptic_frames.py): one pass of
        tensor work and one device-to-host copy per group of frames sharing their mask sizes
        (all of a video's frames are one group). A segment whose queries' masks all missed the
        stride-32 CLIP map (FC-CLIP's "valid" false) gets a zero embedding: appearance
        unknown."""
        groups: dict[MaskSizes, list[int]] = {}
        for i, (raw, size) in enumerate(zip(raws, output_sizes, strict=True)):
            key = MaskSizes(raw["padded_size"], raw["image_size"], (int(size[0]), int(size[1])))
            groups.setdefault(key, []).append(i)
        settings = PanopticSettings(
            is_thing=self._is_thing,
            object_mask_threshold=self.config.object_mask_threshold,
            overlap_threshold=self.config.overlap_threshold,
        )
        outputs: dict[int, FrameSegmentation] = {}
        for sizes, indices in groups.items():
            group = [raws[i] for i in indices]
            results = frame_segmentations(
                torch.stack([raw["class_probs"] for raw in group]),
                [raw["mask_logits"] for raw in group],
                torch.stack([raw["embeddings"] for raw in group]),
                sizes,
                settings,
                torch.stack([raw["valid"] for raw in group]),
            )
            outputs.update(zip(indices, results, strict=True))
        return [outputs[i] for i in range(len(raws))]


def _guard_compiled(
    compiled: Callable[..., dict[str, Tensor]], copy_outputs: bool
) -> Callable[..., dict[str, Tensor]]:
    """`compiled` with a failed compile (raised lazily, at a call) turned into a UserError."""
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InductorError

    def predict(*args: Any) -> dict[str, Tensor]:
        try:
            out = compiled(*args)
        except (BackendCompilerFailed, InductorError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise UserError(
                f"--compile: torch.compile failed on this platform ({reason}); "
                "run without --compile"
            ) from error
        return {key: value.clone() for key, value in out.items()} if copy_outputs else out

    return predict


def _build_seeded(config: FCCLIPConfig, seed: int) -> FCCLIP:
    # Fork the RNG so that building a model does not disturb the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)

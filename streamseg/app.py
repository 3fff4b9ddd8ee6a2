"""Gradio demo: upload a video or an image, name classes, get the overlay, tracks and files.

`build_demo(AppSettings(...))` returns the `gr.Blocks`; `launch(...)` serves it (the
`streamseg app` command). The work itself (run_video for videos, the `streamseg image` calls
for images, tables, zips) is in app_jobs.py. Everything the app writes lives in its own temp
folder (`AppSettings.work_dir`), the only folder besides Gradio's upload cache that the server
is allowed to serve. Requests queue one at a time (a small machine runs one model at once).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamseg.app_jobs import (
    IMAGE_SUFFIXES,
    SEARCH_HEADERS,
    TRACK_HEADERS,
    VIDEO_SUFFIXES,
    VOCAB_PRESETS,
    CacheReport,
    RunResult,
    SearchResult,
    SegmenterCache,
    classifier_cached,
    classify_upload,
    model_choices,
    run_image_job,
    run_video_job,
    search_runs,
    track_rows,
    vocabulary_text,
    write_sample_video,
)
from streamseg.errors import UserError

# The vocabulary preset the page starts with (its classifier is computed by the warm-up).
DEFAULT_PRESET = "shapes"
# Runs kept in the work folder (older ones are deleted: the disk of a small machine).
KEEP_RUNS = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppSettings:
    """How the demo runs."""

    model: str | None = None  # model preselected (None = DEFAULT_MODEL)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    work_dir: Path | None = None  # the app's temp folder (None = a new one in the system temp)
    max_file_mb: float = 200.0  # uploads above this are refused
    max_frames: int = 300  # upper end of the "max frames" slider
    batch_size: int = 2  # frames per forward pass
    # One large vocabulary holds the single model queue for everyone (5,000 classes took
    # 112 s of text encoding on 2 cores): the page refuses more classes than this.
    max_classes: int = 300
    queue_size: int = 16  # requests waiting; more are refused with "queue full"
    concurrency: int = 1  # requests run at once (one model on a small machine)
    # Load the default model and its classifier before serving (`launch`), not on the first click.
    warm_up: bool = True


# ----------------------------------------------------------------------------- the app
class DemoApp:
    """The request handler behind the page: validates, runs, collects outputs."""

    def __init__(self, settings: AppSettings) -> None:
        from streamseg.model.embedded import DEFAULT_MODEL

        self.settings = settings
        work = settings.work_dir
        self.work_dir = Path(tempfile.mkdtemp(prefix="streamseg-app-") if work is None else work)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir = self.work_dir / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.default_model = settings.model or DEFAULT_MODEL
        self.segmenters = SegmenterCache(settings.device)

    def samples(self) -> list[Path]:
        """Example inputs, copied into the work folder (the only served folder): the bundled
        image, any bundled sample video, else a small shapes-world video made here."""
        from streamseg.model.embedded import WEIGHTS_DIRS

        folder = self.work_dir / "samples"
        folder.mkdir(exist_ok=True)
        package_samples = Path(__file__).resolve().parent / "data" / "samples"
        videos = sorted(package_samples.glob("*.mp4"))
        for root in WEIGHTS_DIRS:
            videos += sorted(root.glob("*.mp4")) + sorted(root.glob("*/*.mp4"))
        found = []
        for path in [*videos[:1], package_samples / "shapes.png"]:
            if path.is_file():
                target = folder / path.name
                if not target.exists():
                    shutil.copyfile(path, target)
                found.append(target)
        if not videos:
            target = folder / "shapes_video.mp4"
            if not target.exists():
                write_sample_video(target)
            found.insert(0, target)
        return found

    def _new_run_dir(self) -> Path:
        existing = sorted(self.runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in existing[: max(0, len(existing) - KEEP_RUNS + 1)]:
            shutil.rmtree(old, ignore_errors=True)
        run_dir = self.runs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        run_dir.mkdir()
        return run_dir

    def run(
        self,
        upload: str | None,
        vocab: str,
        stuff: str,
        model: str | None,
        stride: float,
        max_frames: float,
        score_threshold: float,
        progress: Callable[..., Any] | None = None,
    ) -> RunResult:
        """One request. Raises UserError with a message for the page."""
        from streamseg.model.vocab import vocabulary_from_options

        if not upload:
            raise UserError("no input: upload a video or an image, or pick an example")
        source = Path(upload)
        kind = classify_upload(source, self.settings.max_file_mb * 1e6)
        # An empty class box means the model's default vocabulary (resolved once it is loaded).
        stuff_text = (stuff or "").strip() or None
        # An empty box is the model's default (the CLI's "no --vocab"), not an empty --vocab.
        vocab_text = (vocab or "").strip() or None
        vocabulary = vocabulary_from_options(vocab_text, None, stuff_text if vocab_text else None)
        if vocabulary is not None and len(vocabulary) > self.settings.max_classes:
            raise UserError(
                f"classes: {len(vocabulary)} given, this app allows at most "
                f"{self.settings.max_classes} (streamseg app --max-classes)"
            )
        stride = int(stride)
        max_frames = int(max_frames)
        if stride < 1:
            raise UserError(f"stride: must be at least 1, got {stride}")
        if not 1 <= max_frames <= self.settings.max_frames:
            raise UserError(f"max frames: must be in 1..{self.settings.max_frames}")
        if kind == "video":
            from streamseg.video.decode import probe

            probe(source)  # an unreadable video fails before the model loads
        if progress is not None:
            progress(None, desc="loading the model")
        load = self.segmenters.load(model or self.default_model)
        segmenter = load.segmenter
        if vocabulary is None:
            from streamseg.model.default_vocab import require_vocabulary

            vocabulary = require_vocabulary(segmenter, model or self.default_model)
        cache = CacheReport(load.loaded, not classifier_cached(segmenter, vocabulary))
        run_dir = self._new_run_dir()
        if kind == "image":
            result = run_image_job(
                source, run_dir, segmenter, vocabulary, score_threshold=float(score_threshold)
            )
        else:
            result = run_video_job(
                source,
                run_dir,
                segmenter,
                vocabulary,
                stride=stride,
                max_frames=max_frames,
                score_threshold=float(score_threshold),
                batch_size=self.settings.batch_size,
                progress=progress,
            )
        if "-random-seed" in str(getattr(segmenter, "name", "")):
            result.status += (
                "\n\nnote: this model has random weights (a preset, not trained): the output "
                "shows the formats, not real segmentations; the default model shapes-tiny is "
                "trained (on the synthetic shapes world)."
            )
        result.status += f"\n\n{cache.line()}"
        result.cache = cache
        return result

    def search(self, query: str, top_k: float, model: str | None) -> SearchResult:
        """Search the finished video runs of `model` by words (their thumbnails go to a new
        folder of the work folder, the only one served)."""
        if not (query or "").strip():
            raise UserError("search: type some words to look for")
        segmenter = self.segmenters.get(model or self.default_model)
        out_dir = self.work_dir / "search" / uuid.uuid4().hex[:8]
        return search_runs(self.runs_dir, query.strip(), int(top_k), segmenter, out_dir)

    def default_vocabulary(self) -> Any:
        """The vocabulary the page's class boxes start with, read as a click reads them."""
        from streamseg.model.vocab import vocabulary_from_options

        text, stuff = vocabulary_text(DEFAULT_PRESET)
        return vocabulary_from_options(text, None, stuff or None)

    def warm_up(self, say: Callable[[str], None] = lambda line: None) -> CacheReport:
        """Load the default model and compute (or read) the text classifier of the page's
        default classes, so that the first click pays for neither: the model stays in
        `self.segmenters`, the classifier in the disk cache where the click reads it.

        Args:
            say: receives the progress lines ("loading ...", "ready in ...").
        Raises:
            UserError: the default model or vocabulary cannot load.
        """
        began = time.monotonic()
        say(f"loading the model {self.default_model} and its text classifier")
        load = self.segmenters.load(self.default_model)
        vocabulary = self.default_vocabulary()
        computed = not classifier_cached(load.segmenter, vocabulary)
        load.segmenter.set_vocabulary(vocabulary)
        report = CacheReport(load.loaded, computed)
        say(f"ready in {time.monotonic() - began:.1f} s ({report.line()})")
        return report


def _user_message(error: BaseException, upload: str | None) -> str:
    """The error for the page: upload paths shortened to the file name."""
    message = str(error)
    if upload:
        message = message.replace(str(upload), Path(upload).name)
    return message


def build_demo(settings: AppSettings = AppSettings()) -> Any:
    """The Gradio Blocks of the demo (not launched). `demo.streamseg_app` is the `DemoApp`."""
    import gradio as gr

    app = DemoApp(settings)
    samples = app.samples()
    default_text, default_stuff = vocabulary_text(DEFAULT_PRESET)
    accepted = list(VIDEO_SUFFIXES + IMAGE_SUFFIXES)

    def handle(
        upload: str | None,
        vocab: str,
        stuff: str,
        model: str | None,
        stride: float,
        max_frames: float,
        score_threshold: float,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's progress injection
    ) -> tuple[Any, ...]:
        try:
            result = app.run(
                upload, vocab, stuff, model, stride, max_frames, score_threshold, progress
            )
        except UserError as error:
            raise gr.Error(_user_message(error, upload)) from None
        except Exception as error:  # noqa: BLE001 - shown in the page, traceback in the log
            log.exception("streamseg app: run failed")
            raise gr.Error(f"the run failed: {_user_message(error, upload)}") from None
        video = str(result.overlay) if result.kind == "video" else None
        image = str(result.overlay) if result.kind == "image" else None
        return (
            video,
            image,
            result.rows,
            [str(path) for path in result.files],
            result.status,
        )

    def handle_search(query: str, top_k: float, model: str | None) -> tuple[Any, ...]:
        try:
            result = app.search(query, top_k, model)
        except UserError as error:
            raise gr.Error(str(error)) from None
        return result.gallery, result.rows, result.links, result.status

    def show_outputs(upload: str | None) -> tuple[Any, Any]:
        # Only the overlay output that fits the upload is shown (both when nothing is chosen).
        suffix = Path(upload).suffix.lower() if upload else ""
        return (
            gr.update(visible=suffix not in IMAGE_SUFFIXES),
            gr.update(visible=suffix not in VIDEO_SUFFIXES),
        )

    def apply_preset(label: str) -> tuple[str, str]:
        return vocabulary_text(VOCAB_PRESETS[label])

    with gr.Blocks(title="streamseg") as demo:
        gr.Markdown(
            "# streamseg\nOpen-vocabulary video segmentation and tracking (FC-CLIP). "
            "Upload a video or an image, name the classes, press **Run**."
        )
        with gr.Row():
            with gr.Column():
                upload = gr.File(
                    label=f"Video or image (up to {settings.max_file_mb:.0f} MB)",
                    file_types=accepted,
                    type="filepath",
                    elem_id="input-file",
                )
                gr.Examples(
                    examples=[[str(path)] for path in samples],
                    inputs=[upload],
                    label="Examples",
                )
                preset = gr.Dropdown(
                    choices=list(VOCAB_PRESETS),
                    value=next(iter(VOCAB_PRESETS)),
                    label="Vocabulary preset",
                    elem_id="preset",
                )
                vocab = gr.Textbox(
                    value=default_text,
                    lines=3,
                    label="Classes (commas separate classes, | separates synonyms)",
                    elem_id="vocab",
                )
                stuff = gr.Textbox(
                    value=default_stuff,
                    label="Stuff classes (amorphous regions: sky, grass, ...)",
                    elem_id="stuff",
                )
                choices = model_choices(settings.model)
                model = gr.Dropdown(
                    choices=choices, value=app.default_model, label="Model", elem_id="model"
                )
                with gr.Row():
                    stride = gr.Slider(1, 10, value=1, step=1, label="Frame stride")
                    max_frames = gr.Slider(
                        1,
                        settings.max_frames,
                        value=min(48, settings.max_frames),
                        step=1,
                        label="Max frames",
                    )
                    threshold = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Score threshold")
                run = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                video_out = gr.Video(label="Overlay video", elem_id="overlay-video")
                image_out = gr.Image(
                    label="Overlay image", type="filepath", elem_id="overlay-image"
                )
                tracks = gr.Dataframe(
                    headers=TRACK_HEADERS,
                    label="Tracks",
                    interactive=False,
                    elem_id="tracks",
                )
                files = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
        with gr.Accordion("Search your runs by words", open=False):
            gr.Markdown(
                "Every track keeps its CLIP vector: search the finished video runs for "
                "anything, also words that were not among their classes."
            )
            with gr.Row():
                query = gr.Textbox(label="Words", elem_id="search-query", scale=4)
                top_k = gr.Slider(1, 50, value=8, step=1, label="Hits", scale=1)
                find = gr.Button("Search", elem_id="search")
            search_status = gr.Markdown(elem_id="search-status")
            gallery = gr.Gallery(label="Best views", columns=4, elem_id="search-gallery")
            hits = gr.Dataframe(
                headers=SEARCH_HEADERS, label="Tracks", interactive=False, elem_id="search-hits"
            )
            links = gr.Markdown(elem_id="search-links")
        find.click(
            handle_search,
            inputs=[query, top_k, model],
            outputs=[gallery, hits, links, search_status],
            api_name="search",
        )
        upload.change(
            show_outputs,
            inputs=[upload],
            outputs=[video_out, image_out],
            api_visibility="private",
        )
        preset.change(apply_preset, inputs=[preset], outputs=[vocab, stuff], api_name="preset")
        run.click(
            handle,
            inputs=[upload, vocab, stuff, model, stride, max_frames, threshold],
            outputs=[video_out, image_out, tracks, files, status],
            api_name="run",
        )
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    demo.streamseg_app = app
    return demo


def exposure_warning(host: str, share: bool) -> str | None:
    """The warning to print when the app is reachable beyond this machine, else None."""
    import ipaddress

    if share:
        return (
            "warning: --share opens a public gradio.live link: anyone with the link can "
            "upload files and use this machine's CPU/GPU"
        )
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (
        f"warning: binding {host}, reachable from the network: anyone who can reach this port "
        "can upload files and run the model; see docs/APP.md before serving many users"
    )


def launch(
    settings: AppSettings = AppSettings(),
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    block: bool = True,
) -> Any:
    """Build and serve the demo; returns the Blocks (with `block=False`, already serving).

    Only the app's work folder is added to Gradio's served paths; uploads over
    `settings.max_file_mb` are refused by the server before they reach a handler."""
    demo = build_demo(settings)
    if settings.warm_up:
        try:
            demo.streamseg_app.warm_up(
                lambda line: print(f"streamseg app: {line}", file=sys.stderr)
            )
        except UserError as error:  # the page says it again on the first click
            print(f"streamseg app: warning: no warm-up: {error}", file=sys.stderr)
    demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=int(settings.max_file_mb * 1e6),
        allowed_paths=[str(demo.streamseg_app.work_dir)],
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
    )
    return demo


__all__ = [
    "TRACK_HEADERS",
    "AppSettings",
    "DemoApp",
    "RunResult",
    "build_demo",
    "classify_upload",
    "launch",
    "model_choices",
    "run_video_job",
    "track_rows",
    "vocabulary_text",
]

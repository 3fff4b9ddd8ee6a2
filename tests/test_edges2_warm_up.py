"""First runs as fast as the rest (issue 20): the app's warm-up loads the default model and the
page's default classifier before the first click, and the batch workers' warm-up builds their
model before their first task. Shown by counting loads and classifier computations, not by
timing."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_segmenter import make_blob_video

from streamseg.model.text_classifier import text_encodings

gradio = pytest.importorskip("gradio")

from streamseg.app import AppSettings, DemoApp, vocabulary_text  # noqa: E402


@pytest.fixture
def text_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder (weights and text classifiers) for this test only."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("STREAMSEG_CACHE", str(cache))
    return cache


def _app(tmp_path: Path, name: str) -> DemoApp:
    return DemoApp(AppSettings(model="tiny-convnext", device="cpu", work_dir=tmp_path / name))


def test_first_click_after_the_warm_up_loads_and_computes_nothing(
    tmp_path: Path, text_cache: Path
) -> None:
    app = _app(tmp_path, "app")
    video = make_blob_video(tmp_path / "v.mp4", frames=2)
    lines: list[str] = []
    encodings = text_encodings()

    warm = app.warm_up(lines.append)

    assert (warm.model_loaded, warm.classifier_computed) == (True, True)
    assert app.segmenters.loads == 1
    assert text_encodings() == encodings + 1
    assert lines[0] == "loading the model tiny-convnext and its text classifier"
    assert lines[1].startswith("ready in ")
    assert lines[1].endswith("(model loaded by this run, text classifier computed by this run)")
    assert len(list((text_cache / "text").glob("text-*.safetensors"))) == 1

    text, stuff = vocabulary_text("shapes")  # what the page's boxes hold at first
    result = app.run(str(video), text, stuff, None, 1, 2, 0.0)

    assert result.cache is not None
    assert (result.cache.model_loaded, result.cache.classifier_computed) == (False, False)
    assert result.status.endswith("model reused, text classifier cached")
    assert app.segmenters.loads == 1  # the click took the warm model
    assert text_encodings() == encodings + 1  # and read the classifier from the disk cache


def test_without_a_warm_up_the_first_click_pays_and_says_so(
    tmp_path: Path, text_cache: Path
) -> None:
    app = _app(tmp_path, "cold")
    video = make_blob_video(tmp_path / "v.mp4", frames=2)
    encodings = text_encodings()

    first = app.run(str(video), "red circle,blue square,grass", "grass", None, 1, 2, 0.0)
    second = app.run(str(video), "red circle,blue square,grass", "grass", None, 1, 2, 0.0)
    other = app.run(str(video), "red circle,grass", "grass", None, 1, 2, 0.0)

    assert first.status.endswith("model loaded by this run, text classifier computed by this run")
    assert second.status.endswith("model reused, text classifier cached")
    assert other.status.endswith("model reused, text classifier computed by this run")
    assert app.segmenters.loads == 1
    assert text_encodings() == encodings + 2  # one per vocabulary


def test_launch_warms_up_unless_told_not_to(
    tmp_path: Path, text_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamseg.app as app_module

    served: list[int] = []

    def count_launch(self: object, **kwargs: object) -> None:
        served.append(1)

    monkeypatch.setattr(gradio.Blocks, "launch", count_launch)
    settings = AppSettings(model="tiny-convnext", device="cpu", work_dir=tmp_path / "w")
    demo = app_module.launch(settings, block=False)
    assert served == [1]
    assert demo.streamseg_app.segmenters.loads == 1

    cold = AppSettings(model="tiny-convnext", device="cpu", work_dir=tmp_path / "c", warm_up=False)
    demo = app_module.launch(cold, block=False)
    assert served == [1, 1]
    assert demo.streamseg_app.segmenters.loads == 0


# ----------------------------------------------------------------------------- batch workers
def _batch_spec() -> object:
    from streamseg.batch.spec import RunSpec
    from streamseg.config import ModelSettings, RunConfig

    model = ModelSettings(
        name="tiny-convnext", device="cpu", vocab="red,blue,ground", stuff="ground", batch_size=4
    )
    return RunSpec(config=RunConfig(model=model))


def _counts() -> tuple[int, int]:
    """(models built, classifiers computed) by this worker process."""
    from streamseg.batch.model_cache import model_loads
    from streamseg.model.text_classifier import text_encodings

    return model_loads(), text_encodings()


def test_batch_workers_are_warm_before_their_first_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("distributed")
    from streamseg.batch.cluster import open_client
    from streamseg.batch.inputs import expand_inputs
    from streamseg.batch.run import run_batch
    from streamseg.batch.warm_up import warm_workers

    # Workers inherit the environment at spawn: an empty cache, torch on one thread.
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        make_blob_video(archive / name, frames=3)
    spec = _batch_spec()
    with open_client(n_workers=2, threads_per_worker=1, dashboard=False) as client:
        assert set(client.run(_counts).values()) == {(0, 0)}

        warm_workers(client, spec)  # what run_batch does first
        warm = client.run(_counts)
        # Each worker built its model; the classifier was computed once into the shared disk
        # cache (by one worker, or by both when they started together).
        assert {loads for loads, _ in warm.values()} == {1}
        assert 1 <= sum(encodings for _, encodings in warm.values()) <= 2

        records = run_batch(
            expand_inputs([archive]), tmp_path / "out", spec, client, progress=False
        )

        assert [r.status for r in records] == ["done", "done", "done"]
        # No task built a model or computed a classifier: the warm ones were taken.
        assert client.run(_counts) == warm


def test_a_worker_that_cannot_run_the_tasks_is_not_warmed() -> None:
    from streamseg.batch.warm_up import offers

    assert offers({"GPU": 1.0}, {"GPU": 1.0})
    assert offers({"GPU": 2.0}, None)
    assert not offers({}, {"GPU": 1.0})
    assert not offers({"GPU": 0.5}, {"GPU": 1.0})

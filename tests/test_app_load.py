"""The app under load (issue 23): a bounded vocabulary, a bounded text cache, configurable
queueing, and a warning when the page is reachable beyond this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_segmenter import make_blob_video

from streamseg.errors import UserError
from streamseg.model.text_classifier import CACHE_MB_ENV, cache_limit_bytes, prune_cache

gradio = pytest.importorskip("gradio")

from streamseg.app import AppSettings, DemoApp, build_demo, exposure_warning  # noqa: E402


def test_a_vocabulary_over_the_bound_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    app = DemoApp(AppSettings(work_dir=tmp_path, max_classes=50))

    def no_model(name: str) -> None:
        raise AssertionError("the model must not load for a refused request")

    app.segmenters.load = no_model  # type: ignore[method-assign]
    video = make_blob_video(tmp_path / "v.mp4", frames=2)
    vocab = ",".join(f"class {n}" for n in range(51))
    with pytest.raises(UserError, match="51 given, this app allows at most 50"):
        app.run(str(video), vocab, "", None, 1, 2, 0.5)


def test_queue_settings_reach_gradio(tmp_path: Path) -> None:
    demo = build_demo(AppSettings(work_dir=tmp_path, queue_size=3, concurrency=2))
    assert demo._queue.max_size == 3
    assert demo._queue.default_concurrency_limit == 2


@pytest.mark.parametrize(
    ("host", "share", "warned"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),
        ("192.168.1.20", False, True),
        ("127.0.0.1", True, True),
    ],
)
def test_exposure_warning(host: str, share: bool, warned: bool) -> None:
    message = exposure_warning(host, share)
    assert (message is not None) == warned
    if warned:
        assert "gradio.live" in message if share else host in message


def _cache_file(folder: Path, name: str, size: int, age: int) -> Path:
    path = folder / f"text-{name}.safetensors"
    path.write_bytes(b"x" * size)
    os.utime(path, ns=(10**18 - age, 10**18 - age))
    return path


def test_the_text_cache_keeps_the_most_recently_used_within_its_bound(tmp_path: Path) -> None:
    old = _cache_file(tmp_path, "old", 400, age=300)
    middle = _cache_file(tmp_path, "middle", 400, age=200)
    new = _cache_file(tmp_path, "new", 400, age=100)
    other = tmp_path / "notes.txt"
    other.write_text("not a cache file")
    assert prune_cache(tmp_path, 1000) == [old]
    assert middle.exists() and new.exists() and other.exists()
    # the file just written survives even when it alone is over the bound
    assert prune_cache(tmp_path, 100, keep=middle) == [new]
    assert middle.exists()


def test_the_cache_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_MB_ENV, "1.5")
    assert cache_limit_bytes() == 1_500_000
    monkeypatch.delenv(CACHE_MB_ENV)
    assert cache_limit_bytes() == 256_000_000


def test_building_a_classifier_prunes_the_cache(tmp_path: Path, monkeypatch) -> None:
    import torch

    from streamseg.model.text_classifier import build_text_classifier
    from streamseg.model.vocab import parse_vocab

    stale = _cache_file(tmp_path, "stale", 10_000, age=10**9)
    monkeypatch.setenv(CACHE_MB_ENV, "0.005")  # 5,000 bytes: the stale file must go

    def encode(tokens: torch.Tensor) -> torch.Tensor:
        return torch.ones(tokens.shape[0], 8)

    def tokenize(texts: list[str]) -> torch.Tensor:
        return torch.zeros(len(texts), 77, dtype=torch.long)

    build_text_classifier(encode, tokenize, parse_vocab("cat,dog"), "cpu", tmp_path, "key")
    assert not stale.exists()
    assert len(list(tmp_path.glob("text-*.safetensors"))) == 1

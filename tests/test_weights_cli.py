"""`streamseg weights`: the registry, downloads from a local server with sha256 checks, and the
offline error that says where to put the file by hand."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from streamseg.cli import main
from streamseg.errors import UserError
from streamseg.weights import fetch_weights, get_entry, load_registry

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of known bytes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An HTTP server on 127.0.0.1 serving one weights file and one HTML page."""
    root = tmp_path_factory.mktemp("served")
    (root / "model.bin").write_bytes(PAYLOAD)
    (root / "page.html").write_text("<html>sign in</html>")
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A local port nobody listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_registry(path: Path, url: str, sha256: str = "unknown", size: object = "unknown") -> Path:
    size_text = f'"{size}"' if isinstance(size, str) else str(size)
    path.write_text(
        f"""
[test-fcclip]
kind = "fcclip"
description = "a test checkpoint"
url = "{url}"
filename = "model.pth"
sha256 = "{sha256}"
size = {size_text}
license = "Apache-2.0"
preset = "tiny-convnext"
clip_weights = "test-clip"

[test-clip]
kind = "open_clip"
description = "its CLIP"
url = "{url}"
filename = "clip.bin"
sha256 = "unknown"
size = "unknown"
license = "MIT"
clip_model = "tiny"
"""
    )
    return path


def test_project_registry_lists_the_official_weights(capsys) -> None:
    assert main(["weights", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) >= {
        "fcclip-convnext-large-coco",
        "fcclip-r50-coco",
        "clip-convnext-large-d-320-laion2b-ft-soup",
        "clip-rn50-openai",
    }
    large = rows["fcclip-convnext-large-coco"]
    assert large["preset"] == "fcclip-convnext-large"
    assert large["clip_weights"] == "clip-convnext-large-d-320-laion2b-ft-soup"
    assert rows["fcclip-r50-coco"]["clip_weights"] == "clip-rn50-openai"
    clip = rows["clip-convnext-large-d-320-laion2b-ft-soup"]
    assert clip["url"].endswith(
        "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup/resolve/main/"
        "open_clip_pytorch_model.bin"
    )
    for row in rows.values():
        assert row["license"]
        # Never invented: a digest is either 64 hex digits or "unknown".
        assert row["sha256"] == "unknown" or len(row["sha256"]) == 64
    # The presets named in the registry exist.
    from streamseg.model.config import PRESETS

    assert {row["preset"] for row in rows.values() if row["preset"]} <= set(PRESETS)


def test_text_listing(capsys) -> None:
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "fcclip-convnext-large-coco  [fcclip]" in out
    assert "sha256:  unknown" in out


def test_fetch_with_the_right_sha256(server, tmp_path, capsys) -> None:
    registry = write_registry(
        tmp_path / "r.toml", f"{server}/model.bin", PAYLOAD_SHA256, len(PAYLOAD)
    )
    cache = tmp_path / "cache"
    args = ["weights", "--registry", str(registry), "fetch", "test-fcclip", "--no-clip"]
    assert main([*args, "--cache", str(cache), "--quiet"]) == 0
    assert (cache / "model.pth").read_bytes() == PAYLOAD
    assert "test-fcclip: downloaded" in capsys.readouterr().out
    assert [p.name for p in cache.iterdir()] == ["model.pth"]  # no temp files left
    # A second fetch keeps the verified file.
    assert main([*args, "--cache", str(cache), "--quiet"]) == 0
    assert "already cached" in capsys.readouterr().out
    assert (
        main(["weights", "--registry", str(registry), "path", "test-fcclip", "--cache", str(cache)])
        == 0
    )
    assert capsys.readouterr().out.strip() == str(cache / "model.pth")


def test_fetch_with_a_wrong_sha256_keeps_nothing(server, tmp_path, capsys) -> None:
    registry = write_registry(tmp_path / "r.toml", f"{server}/model.bin", "0" * 64)
    cache = tmp_path / "cache"
    code = main(
        [
            "weights",
            "--registry",
            str(registry),
            "fetch",
            "test-fcclip",
            "--no-clip",
            "--cache",
            str(cache),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and PAYLOAD_SHA256 in err
    assert list(cache.iterdir()) == []


def test_fetch_with_unknown_sha256_says_it_could_not_verify(server, tmp_path, capsys) -> None:
    registry = write_registry(tmp_path / "r.toml", f"{server}/model.bin")
    cache = tmp_path / "cache"
    # The FC-CLIP entry brings its CLIP entry along.
    assert (
        main(
            [
                "weights",
                "--registry",
                str(registry),
                "fetch",
                "test-fcclip",
                "--cache",
                str(cache),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"could not verify: the registry has no sha256 (got {PAYLOAD_SHA256})" in out
    assert sorted(p.name for p in cache.iterdir()) == ["clip.bin", "model.pth"]


def test_wrong_size_and_html_pages_are_refused(server, tmp_path) -> None:
    cache = tmp_path / "cache"
    registry = load_registry(write_registry(tmp_path / "a.toml", f"{server}/model.bin", size=5))
    with pytest.raises(UserError, match=f"got {len(PAYLOAD)} bytes, expected 5"):
        fetch_weights(get_entry("test-fcclip", registry), cache, progress=False)
    registry = load_registry(write_registry(tmp_path / "b.toml", f"{server}/page.html"))
    with pytest.raises(UserError, match="sent a web page instead of the file"):
        fetch_weights(get_entry("test-fcclip", registry), cache, progress=False)
    assert list(cache.iterdir()) == []


def test_offline_error_says_where_to_put_the_file(tmp_path, capsys) -> None:
    url = f"http://127.0.0.1:{closed_port()}/model.bin"
    registry = write_registry(tmp_path / "r.toml", url)
    cache = tmp_path / "cache"
    code = main(
        [
            "weights",
            "--registry",
            str(registry),
            "fetch",
            "test-fcclip",
            "--no-clip",
            "--cache",
            str(cache),
            "--timeout",
            "5",
            "--quiet",
        ]
    )
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"streamseg weights: error: could not download {url} (")
    assert lines[0].endswith(f"put the file by hand at {cache / 'model.pth'}")


def test_cache_folder_from_the_environment(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path))
    assert main(["weights", "path", "clip-rn50-openai"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "weights" / "RN50.openai.safetensors")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[a]\nkind = 'x'\nurl = 'u'\nfilename = 'f'\nlicense = 'l'\n", "kind must be one of"),
        ("[a]\nkind = 'fcclip'\nurl = 'u'\nfilename = 'f'\n", "needs a 'license' string"),
        (
            "[a]\nkind = 'fcclip'\nurl = 'u'\nfilename = 'f'\nlicense = 'l'\nsha256 = 'abc'\n",
            "sha256 must be 64 hex digits",
        ),
        (
            "[a]\nkind = 'fcclip'\nurl = 'u'\nfilename = 'f'\nlicense = 'l'\nclip_weights = 'b'\n",
            "clip_weights names no entry",
        ),
        ("[a\n", "cannot read the weights registry"),
    ],
)
def test_bad_registry_files(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_registry(path)


def test_unknown_name(capsys) -> None:
    assert main(["weights", "fetch", "no-such-weights"]) == 2
    assert "no-such-weights: unknown weights (known: " in capsys.readouterr().err


def test_resolve_model_uses_cached_registry_files(monkeypatch, tmp_path) -> None:
    from streamseg.weights import resolve_model

    monkeypatch.setenv("STREAMSEG_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="fetch fcclip-r50-coco` or put the file at"):
        resolve_model("fcclip-r50-coco")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "fcclip_cocopan_r50.pth").write_bytes(b"x")
    with pytest.raises(UserError, match="clip-rn50-openai: CLIP weights not downloaded"):
        resolve_model("fcclip-r50-coco")
    (tmp_path / "weights" / "RN50.openai.safetensors").write_bytes(b"x")
    resolved = resolve_model("fcclip-r50-coco")
    assert resolved.name_or_path == str(tmp_path / "weights" / "fcclip_cocopan_r50.pth")
    assert resolved.config == "fcclip-r50"
    assert resolved.clip_weights == str(tmp_path / "weights" / "RN50.openai.safetensors")
    # An explicit CLIP file wins; other names pass through unchanged.
    assert resolve_model("fcclip-r50-coco", "my.bin").clip_weights == "my.bin"
    assert resolve_model("tiny-convnext").name_or_path == "tiny-convnext"
    assert resolve_model("tiny-convnext").config is None

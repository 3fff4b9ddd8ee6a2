"""The report of `.ci/gpu.sh`: its bench JSON files and step exit codes -> one JSON + a table.

```
python -m streamseg.bench.gpu_report OUT
```
reads, in OUT, every `bench-*.json` (`streamseg bench --json` output; a missing or broken one
is a failed bench, its `.log` tail says why), `steps.tsv` (step, exit code, seconds) and
`pytest-cuda.txt`, and every `memory-format-*.json` (`streamseg.bench.memory_format`), and writes
`results.json` and `results.md`. Nothing here needs a GPU: the
script's `--dry-run` runs it on an empty folder.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
STEPS = "steps.tsv"
PYTEST_LOG = "pytest-cuda.txt"

# (row key, table heading) of the rates in the table, frames per second.
RATES = (
    ("model_fps", "model + post-processing"),
    ("forward_fps", "forward only"),
    ("end_to_end_fps", "end to end"),
    ("end_to_end_overlay_fps", "end to end + overlay"),
    ("capacity_fps", "capacity (replayed)"),
    ("capacity_overlay_fps", "capacity + overlay"),
    ("live_fps", "live"),
    ("live_capacity_fps", "live, replayed"),
)


@dataclass(frozen=True)
class BenchRow:
    """One bench file, summarised (None = not measured or the bench failed)."""

    file: str
    ok: bool
    error: str | None = None
    model: str | None = None
    device: str | None = None
    device_name: str | None = None
    precision: str | None = None
    frame_size: list[int] | None = None
    input_size: list[int] | None = None
    batch_size: int | None = None
    model_fps: float | None = None
    forward_fps: float | None = None
    end_to_end_fps: float | None = None
    end_to_end_overlay_fps: float | None = None
    capacity_fps: float | None = None
    capacity_overlay_fps: float | None = None
    live_fps: float | None = None
    live_capacity_fps: float | None = None
    bound: str | None = None
    gflops_per_frame: float | None = None
    forward_gflops_per_second: float | None = None
    sync_checked: bool | None = None
    sync_raised: bool | None = None
    sync_error: str | None = None
    warn_syncs: int | None = None
    sync_places: dict[str, int] | None = None
    torch_version: str | None = None


def bench_row(path: Path) -> BenchRow:
    """The summary of one `streamseg bench --json` file; a failed row if it is unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return BenchRow(file=path.name, ok=False, error=_log_tail(path) or str(error))
    stages = data.get("stages") or {}
    capacity = data.get("capacity") or {}
    sync = data.get("sync_debug") or {}
    forward = data.get("forward_seconds_per_frame")

    def fps(stage: str) -> float | None:
        return stages[stage]["fps"] if stage in stages else None

    live = data.get("live") or {}
    live_capacity = data.get("live_capacity") or {}
    return BenchRow(
        file=path.name,
        ok=True,
        model=data.get("model"),
        device=data.get("device"),
        device_name=data.get("device_name"),
        precision=data.get("precision"),
        frame_size=data.get("frame_size"),
        input_size=data.get("input_size"),
        batch_size=data.get("batch_size"),
        model_fps=fps("model") or capacity.get("model_fps"),
        forward_fps=1.0 / forward if forward else None,
        end_to_end_fps=fps("end_to_end"),
        end_to_end_overlay_fps=fps("end_to_end_overlay"),
        capacity_fps=fps("capacity"),
        capacity_overlay_fps=fps("capacity_overlay"),
        live_fps=live.get("processed_fps"),
        live_capacity_fps=live_capacity.get("processed_fps"),
        bound=capacity.get("bound"),
        gflops_per_frame=data.get("gflops_per_frame"),
        forward_gflops_per_second=data.get("forward_gflops_per_second"),
        sync_checked=sync.get("checked"),
        sync_raised=sync.get("raised"),
        sync_error=sync.get("error"),
        warn_syncs=sync.get("warn_syncs"),
        sync_places=sync.get("places"),
        torch_version=data.get("torch_version"),
    )


def read_steps(path: Path) -> list[dict[str, Any]]:
    """`steps.tsv` lines "name<TAB>exit code<TAB>seconds" as dicts (none if it is missing)."""
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].lstrip("-").isdigit():
            steps.append({"step": parts[0], "rc": int(parts[1]), "seconds": float(parts[2])})
    return steps


def write_report(folder: Path) -> dict[str, Any]:
    """Write `results.json` and `results.md` in `folder` from what it holds; return the JSON."""
    rows = [bench_row(path) for path in sorted(folder.glob("bench-*.json"))]
    steps = read_steps(folder / STEPS)
    pytest_log = folder / PYTEST_LOG
    pytest_summary = _last_line(pytest_log) if pytest_log.is_file() else None
    formats = [_memory_format(path) for path in sorted(folder.glob("memory-format-*.json"))]
    report = {
        "benches": [asdict(row) for row in rows],
        "memory_formats": formats,
        "steps": steps,
        "pytest_cuda": pytest_summary,
        "failed_steps": [s["step"] for s in steps if s["rc"] != 0],
    }
    (folder / RESULTS_JSON).write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(rows, steps, pytest_summary) + memory_format_markdown(formats)
    (folder / RESULTS_MD).write_text(text)
    return report


def _memory_format(path: Path) -> dict[str, Any]:
    """One `streamseg.bench.memory_format` JSON ({"file", "error"} when unreadable)."""
    try:
        return {"file": path.name, **json.loads(path.read_text())}
    except (OSError, ValueError) as error:
        return {"file": path.name, "error": str(error)}


def memory_format_markdown(formats: Sequence[dict[str, Any]]) -> str:
    """The channels_last comparison as a Markdown table ("" when there is none)."""
    if not formats:
        return ""
    lines = ["", "Forward with the weights in channels_last (streamseg.bench.memory_format):", ""]
    lines.append(
        "| file | precision | default s/frame | channels_last s/frame | speedup | max diff |"
    )
    lines.append("|---|---|---:|---:|---:|---:|")
    for item in formats:
        if "error" in item:
            lines.append(f"| {item['file']} | failed: {_cell(item['error'])} |")
            continue
        diff = max(item["max_abs_diff_class_probs"], item["max_abs_diff_mask_logits"])
        cells = [
            item["file"],
            item["precision"],
            f"{item['contiguous_seconds_per_frame']:.4f}",
            f"{item['channels_last_seconds_per_frame']:.4f}",
            f"{item['speedup']:.2f}",
            f"{diff:.2g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(rows: Sequence[BenchRow], steps: Sequence[dict[str, Any]], pytest: str | None) -> str:
    """The report as Markdown: steps, then one table row per bench, then the syncs found."""
    lines = ["# GPU results (.ci/gpu.sh)", ""]
    devices = sorted({f"{r.device_name} ({r.device})" for r in rows if r.ok and r.device})
    torches = sorted({r.torch_version for r in rows if r.ok and r.torch_version})
    lines.append(f"- device: {', '.join(devices) or 'none measured'}")
    lines.append(f"- torch: {', '.join(torches) or '-'}")
    lines.append(f"- CUDA tests (`pytest -m cuda`): {pytest or 'not run'}")
    for step in steps:
        lines.append(f"- step `{step['step']}`: exit {step['rc']}, {step['seconds']:.0f} s")
    lines += ["", "Frames per second (median of the repeats; see docs/BENCHMARKS.md).", ""]
    if not rows:
        lines += ["No bench results (pending: the benches did not run here).", ""]
        return "\n".join(lines)
    head = ["bench", "model", "precision", "frames", "batch", *(h for _, h in RATES)]
    head += ["bound", 'sync debug "error"', 'syncs ("warn")']
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * 5 + "---:|" * len(RATES) + "---|---|---:|")
    for row in rows:
        if not row.ok:
            lines.append(f"| {row.file} | failed: {_cell(row.error)} |")
            continue
        size = "x".join(str(v) for v in row.frame_size or [])
        cells = [row.file, row.model, row.precision, size, str(row.batch_size)]
        cells += [_rate(getattr(row, key)) for key, _ in RATES]
        cells += [row.bound or "-", _sync(row), _count(row.warn_syncs)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    places = [(row.file, row.sync_places) for row in rows if row.ok and row.sync_places]
    if places:
        lines += ["", 'Host synchronisations of one end-to-end run (mode "warn"):', ""]
        for name, counts in places:
            lines.append(f"- {name}: " + ", ".join(f"`{p}` x{n}" for p, n in counts.items()))
    return "\n".join(lines) + "\n"


def _rate(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


def _count(value: int | None) -> str:
    return str(value) if value is not None else "-"


def _sync(row: BenchRow) -> str:
    if not row.sync_checked:
        return "not checked"
    return f"raised: {row.sync_error}" if row.sync_raised else "raised nothing"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _last_line(path: Path) -> str | None:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _log_tail(path: Path) -> str | None:
    """The last line of the bench's log (`bench-x.json` -> `bench-x.log`), if any."""
    log = path.with_suffix(".log")
    return _last_line(log) if log.is_file() else None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m streamseg.bench.gpu_report OUT_FOLDER", file=sys.stderr)
        return 2
    report = write_report(Path(args[0]))
    print(f"gpu_report: {len(report['benches'])} bench(es) -> {Path(args[0]) / RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

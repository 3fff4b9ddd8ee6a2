"""The model card of a shipped shapes-world model (weights/shapes-tiny/MODEL_CARD.md).

    write_model_card("weights/shapes-tiny/MODEL_CARD.md", model_folder="weights/shapes-tiny",
                     clip_eval="RUN/clip/eval.json", measure="RUN/measure/measure.json",
                     clip_run="RUN/clip", fcclip_run="RUN/fcclip")

Inputs are the JSON files the project's commands write; each may be missing or partial (a
figure it would give reads "not measured"), and every figure in the card names the command
that produced it:
- `streamseg clip eval --json F`: zero-shot CLIP accuracies (train/clip/evaluate.py);
- `streamseg measure --out DIR`: DIR/measure.json, PQ per ensemble mode over all / seen /
  unseen classes, VPQ / STQ / AQ of the video pipeline (bench/quality.py);
- RUN/clip/log.jsonl (`streamseg clip train`) and RUN/fcclip/metrics.jsonl (`streamseg
  train`): steps and wall time. Their "time" restarts at 0 in each resumed session, so the
  wall time is the sum over sessions of each session's last logged time.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from streamseg.errors import UserError

NOT_MEASURED = "not measured"
# How weights/shapes-tiny/sample.mp4 was made (then copied from videos/video_000004.mp4).
SAMPLE_COMMAND = (
    "streamseg synth videos --out /tmp/sample-synth --n 1 --seed 4 --size 256 --frames 84 --fps 12"
)
MODES = ("in-vocab", "out-of-vocab", "ensemble")
CLIP_LOG = "log.jsonl"
FCCLIP_LOG = "metrics.jsonl"  # = streamseg.train.loop.METRICS


def read_json_file(path: str | Path | None) -> dict[str, Any] | None:
    """A JSON object from `path`, None when no path is given or the file is missing."""
    if path is None or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable JSON ({error})") from None
    return data if isinstance(data, dict) else None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON-object lines of a log; unparsable lines (a cut last line) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def training_time(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """{"steps", "seconds", "sessions"} from step logs with per-session "time" (seconds since
    the session started); a new session starts where time or step goes back. None: no log."""
    timed = [r for r in records if isinstance(r.get("time"), int | float) and "step" in r]
    if not timed:
        return None
    seconds, sessions, last = 0.0, 1, timed[0]
    for record in timed[1:]:
        if record["time"] < last["time"] or record["step"] < last["step"]:
            seconds += float(last["time"])
            sessions += 1
        last = record
    seconds += float(last["time"])
    steps = max(int(r["step"]) for r in records if isinstance(r.get("step"), int))
    return {"steps": steps, "seconds": seconds, "sessions": sessions}


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _pct(value: Any) -> str:
    """A fraction as a percentage with one decimal; "not measured" for missing values."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NOT_MEASURED
    return f"{100 * value:.1f}"


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _model_facts(folder: Path) -> tuple[list[str], dict[str, Any]]:
    """Lines on the shipped files (sha256, size, dtype) and the config.json header."""
    from streamseg.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, file_sha256

    header = read_json_file(folder / CONFIG_FILE) or {}
    weights = folder / WEIGHTS_FILE
    lines = ["## Files", ""]
    if weights.is_file():
        lines += [
            f"- `{WEIGHTS_FILE}`: {weights.stat().st_size / 1e6:.2f} MB, "
            f"{header.get('storage_dtype', 'float32')} storage (loaded as float32)"
            + (
                f"; int8 rows with a float32 scale per row for {', '.join(header['int8_rows'])}"
                if header.get("int8_rows")
                else ""
            ),
            f"- sha256 `{file_sha256(weights)}` (`sha256sum {weights}`; all files: "
            f"`sha256sum -c SHA256SUMS` in `{folder}`)",
        ]
    else:
        lines.append(f"- `{WEIGHTS_FILE}`: {NOT_MEASURED} (no file in {folder})")
    config = header.get("config") or {}
    lines += [
        f"- `{CONFIG_FILE}`: CLIP `{config.get('clip_model', NOT_MEASURED)}`, "
        f"{config.get('num_queries', '?')} queries, test size {config.get('test_short_edge', '?')}"
        f" px, default vocabulary `{header.get('default_vocab') or 'none'}`",
        f"- written by `streamseg weights ship RUN/fcclip/model {folder} --default-vocab "
        f"{header.get('default_vocab') or 'shapes'}`",
    ]
    sample = folder / "sample.mp4"
    if sample.is_file():
        lines.append(
            f"- `sample.mp4`: {sample.stat().st_size / 1e6:.2f} MB, the README's first input, "
            f"made by `{SAMPLE_COMMAND}` (videos/video_000004.mp4 of that folder)"
        )
    return lines, header


def _recipe_lines(recipe: Path) -> tuple[list[str], dict[str, Any]]:
    """The recipe's commands (its comment lines that run `streamseg`) and main settings."""
    if not recipe.is_file():
        return [f"Recipe `{recipe}`: {NOT_MEASURED} (file missing)."], {}
    text = recipe.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{recipe}: not TOML ({error})") from None
    commands: list[str] = []
    pending: str | None = None  # a command continued with a trailing backslash
    for line in text.splitlines():
        stripped = line.strip()
        body = stripped[1:].split("  #")[0].strip() if stripped.startswith("#") else ""
        if pending is not None:
            pending += " " + body.removesuffix("\\").strip()
        elif body.startswith("streamseg "):
            pending = body.removesuffix("\\").strip()
        else:
            continue
        if not body.endswith("\\"):
            commands.append(pending)
            pending = None
    clip, fcclip = data.get("clip", {}), data.get("fcclip", {})
    optim = fcclip.get("optim", {})
    lines = [f"Recipe: `{recipe}` (seeds fixed; each stage resumable).", "", "```"]
    lines += list(dict.fromkeys(commands)) or ["(no commands in the recipe's comments)"]
    lines += ["```", ""]
    lines.append(
        f"- stage 1, CLIP: trunk {clip.get('trunk', '?')}, {clip.get('steps', '?')} steps of "
        f"{clip.get('batch_size', '?')} images at {clip.get('image_size', '?')} px, "
        f"lr {clip.get('lr', '?')}"
    )
    lines.append(
        f"- stage 2, FC-CLIP head `{fcclip.get('model', '?')}` on the frozen CLIP: "
        f"{optim.get('steps', '?')} steps of {optim.get('batch_size', '?')} images, "
        f"lr {optim.get('lr', '?')}, {optim.get('schedule', '?')} schedule, vocabulary "
        f"`{fcclip.get('vocabulary', '?')}`"
    )
    return lines, data


def _class_split(
    measure: dict[str, Any] | None, recipe: dict[str, Any], header: dict[str, Any]
) -> tuple[list[str], list[str], str]:
    """(seen, unseen, where from): measure.json, else the recipe's kept classes, else the
    model's train_vocabulary."""
    from streamseg.model.vocab import SHAPES, builtin_vocabulary

    classes = builtin_vocabulary(SHAPES).classes
    names = [c.name for c in classes]
    seen = _get(measure, "images", "seen_classes")
    unseen = _get(measure, "images", "unseen_classes")
    if isinstance(seen, list) and isinstance(unseen, list):
        return seen, unseen, "`streamseg measure` (measure.json)"
    keep = _get(recipe, "fcclip", "data", "keep_categories")
    if isinstance(keep, list) and keep:
        return [n for n in names if n in keep], [n for n in names if n not in keep], "the recipe"
    synonyms = set(_get(header, "config", "train_vocabulary") or [])
    if synonyms:
        flags = [bool(set(c.synonyms) & synonyms) for c in classes]
        return (
            [n for n, s in zip(names, flags, strict=True) if s],
            [n for n, s in zip(names, flags, strict=True) if not s],
            "the model's train_vocabulary",
        )
    return [], [], NOT_MEASURED


def _clip_lines(
    result: dict[str, Any] | None, path: Any, clip_run: Any, unseen: list[str] | None = None
) -> list[str]:
    run = clip_run or "RUN/clip"
    single, regions = _get(result, "single"), _get(result, "regions")
    size = _get(result, "size") or 256
    count = _get(single, "count") or 240
    lines = [
        "## Zero-shot CLIP (stage 1)",
        "",
        f"Command: `streamseg clip eval --out {run} --size {size} --n {count} --json "
        f"{path or 'EVAL.json'}`" + ("" if result else f" ({NOT_MEASURED}: no JSON given)"),
        "",
        "| accuracy (%) | all | things | stuff | colour | shape | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, summary in (("single objects", single), ("regions (mask-pooled)", regions)):
        cells = [_pct(_get(summary, key)) for key in ("all", "things", "stuff", "color", "shape")]
        n = _get(summary, "count")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {n if n else NOT_MEASURED} |")
    single_classes = _get(single, "per_class") or {}
    region_classes = _get(regions, "per_class") or {}
    if single_classes or region_classes:
        # Every class, seen and unseen alike: the CLIP saw every name; FC-CLIP's training
        # labels did not (the last column).
        held_out = set(unseen or ())
        per_class = [
            f"{count / len(classes):.0f} {label}"
            for label, summary, classes in (
                ("single objects", single, single_classes),
                ("regions", regions, region_classes),
            )
            if classes and isinstance(count := _get(summary, "count"), int)
        ]
        lines += [
            "",
            "Per class (accuracy %; the CLIP was trained on every name, FC-CLIP's head only on "
            "the seen classes; about " + " and ".join(per_class) + " per class, so the "
            "cells are coarse):",
            "",
            "| class | single objects | regions | in FC-CLIP training |",
            "|---|---|---|---|",
        ]
        for name in dict.fromkeys([*single_classes, *region_classes]):
            where = "unseen (held out)" if name in held_out else "seen"
            lines.append(
                f"| {name} | {_pct(single_classes.get(name))} | "
                f"{_pct(region_classes.get(name))} | {where if unseen else NOT_MEASURED} |"
            )
    return lines


def _measure_lines(result: dict[str, Any] | None, path: Any) -> list[str]:
    settings = _get(result, "settings") or {}
    out = Path(path).parent if path else "DIR"
    flags = [
        f"--{key} {settings[name]}"
        for key, name in (
            ("images", "n_images"),
            ("videos", "n_videos"),
            ("frames", "frames"),
            ("size", "size"),
            ("seed", "seed"),
        )
        if name in settings
    ]
    command = " ".join(["streamseg measure --out", str(out), *flags])
    lines = [
        "## Measured quality (fresh validation data, never seen in training)",
        "",
        f"Command: `{command}`" + ("" if result else f" ({NOT_MEASURED}: no JSON given)"),
    ]
    if settings:
        lines.append(
            f"(model `{settings.get('model', '?')}`, device {settings.get('device', '?')}, "
            f"{settings.get('elapsed_seconds', '?')} s in all)"
        )
    lines += [
        "",
        "Images, panoptic quality (%) by classifier (FC-CLIP's ablation: in-vocabulary, "
        "out-of-vocabulary, geometric ensemble):",
        "",
        "| mode | PQ all | PQ seen | PQ unseen | PQ things | PQ stuff | SQ | RQ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        scores = _get(result, "images", "modes", mode)
        groups = ("all", "seen", "unseen", "things", "stuff")
        cells = [_pct(_get(scores, group, "pq")) for group in groups]
        cells += [_pct(_get(scores, "all", key)) for key in ("sq", "rq")]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    videos = _get(result, "videos")
    counted = (
        f"{_get(videos, 'videos')} videos, {_get(videos, 'frames')} frames"
        if _get(videos, "videos")
        else NOT_MEASURED
    )
    lines += [
        "",
        f"Videos through `streamseg run`'s pipeline ({counted}), in %:",
        "",
        "| VPQ | VPQ things | VPQ stuff | STQ | AQ | SQ (STQ) |",
        "|---|---|---|---|---|---|",
        "| "
        + " | ".join(
            _pct(_get(videos, key)) for key in ("vpq", "vpq_things", "vpq_stuff", "stq", "aq", "sq")
        )
        + " |",
    ]
    return lines


def _training_lines(clip_run: Any, fcclip_run: Any, recipe: Path) -> list[str]:
    lines = [
        "## Training time",
        "",
        "| stage | command | steps | wall time | sessions |",
        "|---|---|---|---|---|",
    ]
    clip_command = f"streamseg clip train --pipeline {recipe} --out {clip_run}"
    fcclip_command = f"streamseg train --pipeline {recipe} --out {fcclip_run}"
    stages = (
        ("CLIP", clip_run, CLIP_LOG, clip_command),
        ("FC-CLIP", fcclip_run, FCCLIP_LOG, fcclip_command),
    )
    last_eval = None
    for label, run, log_name, command in stages:
        records = read_jsonl(Path(run) / log_name) if run else []
        timing = training_time(records)
        if timing is None:
            lines.append(f"| {label} | `{command}` | {NOT_MEASURED} | {NOT_MEASURED} | - |")
        else:
            lines.append(
                f"| {label} | `{command}` | {timing['steps']} | {_duration(timing['seconds'])} "
                f"| {timing['sessions']} |"
            )
        if label == "FC-CLIP":
            evals = [r for r in records if isinstance(r.get("eval"), dict)]
            last_eval = evals[-1] if evals else None
    lines += ["", "Wall time: each session's last logged time, summed over sessions (resumes)."]
    if last_eval is not None:
        values = ", ".join(
            f"{k} {v:.1f}" for k, v in last_eval["eval"].items() if isinstance(v, int | float)
        )
        lines.append(
            f"Last validation during training (step {last_eval.get('step')}, `streamseg train`, "
            f"{fcclip_run}/{FCCLIP_LOG}): {values}."
        )
    return lines


def build_model_card(
    *,
    model_folder: str | Path,
    clip_eval: str | Path | None = None,
    measure: str | Path | None = None,
    clip_run: str | Path | None = None,
    fcclip_run: str | Path | None = None,
    recipe: str | Path = "pipelines/train-shapes-tiny.toml",
) -> str:
    """The card's Markdown text (see the module docstring for the inputs)."""
    from streamseg.model.vocab import SHAPES, builtin_vocabulary

    folder, recipe = Path(model_folder), Path(recipe)
    measure_data = read_json_file(measure)
    file_lines, header = _model_facts(folder)
    recipe_lines, recipe_data = _recipe_lines(recipe)
    seen, unseen, split_source = _class_split(measure_data, recipe_data, header)
    categories = builtin_vocabulary(SHAPES).classes
    things = sum(c.is_thing for c in categories)
    lines = [
        f"# Model card: {folder.name}",
        "",
        "FC-CLIP (Yu et al., NeurIPS 2023) trained from scratch on the synthetic shapes world, "
        "small enough to ship inside the repository. It is the default model of `streamseg "
        "run`, `streamseg image`, the app and batch jobs, with the default vocabulary "
        f"`{header.get('default_vocab') or 'none'}`.",
        "",
        *file_lines,
        "",
        "## Data",
        "",
        f"Generated, not collected: the shapes world (streamseg/synthetic/), {things} thing "
        f"classes (8 colours x 6 shapes) and {len(categories) - things} stuff textures, "
        "rendered with exact panoptic ground truth by `streamseg synth images|videos` "
        "(commands below). No real images, no people, no licences of third-party data.",
        "",
        "## Recipe",
        "",
        *recipe_lines,
        "",
        *_training_lines(clip_run or "RUN/clip", fcclip_run or "RUN/fcclip", recipe),
        "",
        *_clip_lines(read_json_file(clip_eval), clip_eval, clip_run, unseen),
        "",
        *_measure_lines(measure_data, measure),
        "",
        "## Limits",
        "",
        "- It knows only the shapes world: real photos and videos give meaningless segments. "
        "Use an official FC-CLIP checkpoint (`streamseg weights list`) for real data.",
        "- Open vocabulary within that world only: classes held out from training (unseen) "
        "are recognised only through the small CLIP's zero-shot ability (table above).",
        f"- Seen classes ({len(seen)}, from {split_source}): {', '.join(seen) or NOT_MEASURED}.",
        f"- Unseen classes ({len(unseen)}): {', '.join(unseen) or NOT_MEASURED}.",
        "- Inputs are resized to the test size of config.json (shortest edge "
        f"{_get(header, 'config', 'test_short_edge') or '?'} px), the size it was trained at.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(out: str | Path, **inputs: Any) -> Path:
    """Write `build_model_card(**inputs)` to `out` (atomically)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(out.name + ".tmp")
    temp.write_text(build_model_card(**inputs), encoding="utf-8")
    temp.replace(out)
    return out

"""The one TOML-to-dataclass loader behind run presets, training recipes and the CLIP recipe."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from streamseg.config import load_run_config, run_config_from_dict
from streamseg.dataclass_toml import from_dict, load_table, read_toml
from streamseg.errors import UserError
from streamseg.train.clip.loop import load_clip_train_config
from streamseg.train.config import load_train_config


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    names: tuple[str, ...] = ()
    pair: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Outer:
    steps: int = 1
    label: str | None = None
    on: bool = False
    extra: dict[str, int] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)


def test_builds_nested_tables_tuples_and_floats() -> None:
    data = {"steps": 3, "inner": {"rate": 2, "names": ["a", "b"], "pair": [1, 2.5]}}
    built = from_dict(Outer, data, "f.toml")
    assert built == Outer(steps=3, inner=Inner(rate=2.0, names=("a", "b"), pair=(1.0, 2.5)))
    assert isinstance(built.inner.rate, float) and isinstance(built.inner.pair[0], float)
    assert from_dict(Outer, {}, "f.toml") == Outer()  # left-out keys keep their defaults


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stepz": 1}, r"^f\.toml: unknown keys \['stepz'\] \(known: steps, label, on, extra, "),
        ({"inner": {"rte": 1}}, r"^f\.toml \[inner\]: unknown keys \['rte'\]"),
        ({"inner": 3}, r"^f\.toml: 'inner' must be a table$"),
        ({"steps": "3"}, r"^f\.toml: 'steps' must be int, got '3'$"),
        ({"steps": True}, r"'steps' must be int, got True"),
        ({"on": 1}, r"'on' must be bool, got 1"),
        ({"label": 5}, r"'label' must be str \| None, got 5"),
        ({"extra": [1]}, r"'extra' must be dict"),
        ({"inner": {"names": "ab"}}, r"\[inner\]: 'names' must be a list of str, got 'ab'"),
        ({"inner": {"pair": [1]}}, r"'pair' must be a list of 2 \(float, float\), got \[1\]"),
    ],
)
def test_mistakes_are_user_errors_naming_file_table_and_key(data, message) -> None:
    with pytest.raises(UserError, match=message):
        from_dict(Outer, data, "f.toml")


def test_file_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="no such pipeline file"):
        read_toml(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[a\n")
    with pytest.raises(UserError, match=r"bad\.toml: not valid TOML"):
        read_toml(bad)
    bad.write_text("x = 1\n")
    with pytest.raises(UserError, match=r"bad\.toml: no \[inner\] table"):
        load_table(Inner, bad, "inner")
    with pytest.raises(UserError, match=r"bad\.toml: 'x' must be a table"):
        load_table(Inner, bad, "x")
    bad.write_text("[outer.inner]\nrate = 'fast'\n")
    with pytest.raises(UserError, match=r"bad\.toml \[outer\.inner\]: 'rate' must be float"):
        load_table(Outer, bad, "outer")


def test_every_loader_uses_it(tmp_path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        "[model]\nbatch_size = 2\nkeep = ['dog']\n"
        "[fcclip]\nseed = 'x'\n[fcclip.data]\ntrain_json = 'j'\n"
        "[clip]\nsteps = 2\nlr = 1\n"
    )
    run = load_run_config(path)
    assert run.model.batch_size == 2 and run.model.keep == ("dog",)
    with pytest.raises(UserError, match=r"p\.toml \[fcclip\]: 'seed' must be int, got 'x'"):
        load_train_config(path)
    clip = load_clip_train_config(path)
    assert clip.steps == 2 and clip.lr == 1.0 and isinstance(clip.lr, float)
    with pytest.raises(UserError, match=r"x\.toml \[decode\]: unknown keys \['strid'\]"):
        run_config_from_dict({"decode": {"strid": 2}}, "x.toml")

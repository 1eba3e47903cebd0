"""`lethe filters train`'s help states the TrainConfig defaults it overrides (they are written
into the help text because the CLI does not import torch to show help): checked here."""

from __future__ import annotations

import dataclasses
import re

from click.testing import CliRunner

from lethe.cli import main
from lethe.filters import FORGET_LOSSES, TrainConfig


def _help() -> str:
    res = CliRunner().invoke(main, ["filters", "train", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


def test_filters_train_help_defaults_are_the_train_config_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    _assert_help_defaults(
        _help(),
        defaults,
        [
            ("--epochs", "epochs"),
            ("--lr", "lr"),
            ("--batch-size", "batch_size"),
            ("--max-set-size", "max_set_size"),
            ("--seed", "seed"),
            ("--forget-loss", "forget_loss"),
            ("--set-size-power", "set_size_power"),
        ],
    )


def _assert_help_defaults(
    text: str, defaults: dict[str, object], pairs: list[tuple[str, str]]
) -> None:
    """Each option's "(default X)" in ``text`` is its dataclass field's default."""
    for option, field in pairs:
        m = re.search(re.escape(option) + r"\b.*?\(default ([^;:)]+)", text)
        assert m is not None, f"{option} states no default"
        stated = m.group(1).strip()
        assert stated == str(defaults[field]), (
            f"{option}: help says {stated}, the dataclass has {defaults[field]!r}"
        )


def test_forget_loss_choices_are_the_library_choices() -> None:
    text = _help()
    m = re.search(r"--forget-loss \[([^\]]+)\]", text)
    assert m is not None and tuple(m.group(1).split("|")) == FORGET_LOSSES


def test_model_reference_help_defaults_are_the_reference_config_defaults() -> None:
    from lethe.workflow import ReferenceConfig

    res = CliRunner().invoke(main, ["model", "reference", "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    defaults = {f.name: f.default for f in dataclasses.fields(ReferenceConfig)}
    _assert_help_defaults(
        text,
        defaults,
        [
            ("--epochs", "epochs"),
            ("--lr", "lr"),
            ("--batch-size", "batch_size"),
            ("--seeds", "seeds"),
        ],
    )
    assert "--device" in text

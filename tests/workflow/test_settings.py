"""Project settings: arguments > environment > lethe.toml > defaults, validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from lethe.errors import ConfigError
from lethe.workflow import Settings


def test_defaults_live_under_the_project(tmp_path: Path) -> None:
    s = Settings.load(tmp_path / "p", env={})
    assert s.database_url == f"sqlite:///{(tmp_path / 'p' / 'lethe.db').resolve()}"
    assert s.keys == (tmp_path / "p" / "keys").resolve()
    assert s.origin == "lethe.local/p" and s.due_days == 30 and s.policy == {}


def test_precedence_arguments_environment_file(tmp_path: Path) -> None:
    (tmp_path / "lethe.toml").write_text(
        '[lethe]\ndatabase_url = "sqlite:///from-file.db"\norigin = "file.example/log"\n'
        "due_days = 14\n[policy]\nmax_retain_drop = 0.05\n"
    )
    env = {
        "LETHE_DATABASE_URL": "postgresql+psycopg://u@db/lethe",
        "LETHE_KEY_DIR": "/secrets/keys",
    }
    s = Settings.load(tmp_path, env=env)
    assert s.database_url == "postgresql+psycopg://u@db/lethe"  # env beats the file
    assert s.keys == Path("/secrets/keys")
    assert s.origin == "file.example/log" and s.due_days == 14  # the file beats defaults
    assert s.policy == {"max_retain_drop": 0.05}
    s2 = Settings.load(tmp_path, env=env, origin="arg.example/log", database_url="sqlite:///x.db")
    assert s2.origin == "arg.example/log"  # arguments beat everything
    assert s2.database_url == f"sqlite:///{(tmp_path / 'x.db').resolve()}"  # relative to project
    assert (
        Settings.load(
            tmp_path, env={"LETHE_PROJECT_DIR": str(tmp_path / "q")}, config=tmp_path / "lethe.toml"
        ).project_dir
        == tmp_path
    )


def test_round_trip_through_toml(tmp_path: Path) -> None:
    s = Settings.load(tmp_path, env={}, origin="ex.org/log", policy={"max_parity": 0.001})
    (tmp_path / "lethe.toml").write_text(s.to_toml())
    again = Settings.load(tmp_path, env={})
    assert (again.database_url, again.keys, again.origin, again.policy) == (
        s.database_url,
        s.keys,
        s.origin,
        s.policy,
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[lethe]\nbogus = 1\n", "unknown keys"),
        ("[other]\n", "unknown tables"),
        ("[lethe]\ndue_days = 0\n", "due_days"),
        ('[lethe]\norigin = "has space"\n', "origin"),
        ("not toml = = \n", "cannot read TOML"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "lethe.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        Settings.load(tmp_path, env={})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(tmp_path, env={}, config=tmp_path / "nope.toml")


def test_reference_and_erase_tables_load_and_round_trip(tmp_path: Path) -> None:
    (tmp_path / "lethe.toml").write_text(
        "[lethe]\n[reference]\nepochs = 4\nlr = 0.002\nseeds = 5\n[erase]\nepochs = 3\n"
    )
    s = Settings.load(tmp_path, env={})
    assert s.reference == {"epochs": 4, "lr": 0.002, "seeds": 5} and s.erase == {"epochs": 3}
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "lethe.toml").write_text(s.to_toml())
    again = Settings.load(tmp_path / "again", env={})
    assert again.reference == s.reference and again.erase == s.erase
    (tmp_path / "lethe.toml").write_text("[referense]\nepochs = 4\n")
    with pytest.raises(ConfigError, match=r"\[reference\], \[erase\]"):
        Settings.load(tmp_path, env={})

"""Where a Lethe project lives and how it is configured.

Precedence: explicit arguments > ``LETHE_*`` environment variables > TOML file > defaults.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lethe.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["CONFIG_NAME", "Settings"]

CONFIG_NAME = "lethe.toml"
_ORIGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_ENV = {
    "LETHE_PROJECT_DIR": "project_dir",
    "LETHE_DATABASE_URL": "database_url",
    "LETHE_KEY_DIR": "key_dir",
    "LETHE_LOG_ORIGIN": "origin",
    "LETHE_KEY_PASSPHRASE": "key_passphrase",
}
_FIELDS = {"database_url", "key_dir", "origin", "due_days", "secrets_dir"}


@dataclass(frozen=True)
class Settings:
    """A Lethe project's settings.

    ``project_dir`` holds (by default) the SQLite database ``lethe.db``, the log keys in
    ``keys/``, the subject-commitment keys' database and the published models under
    ``models/``. ``database_url`` may point at PostgreSQL instead
    (``postgresql+psycopg://user@host/db``); relative SQLite paths resolve against
    ``project_dir``. ``policy`` is the ``[policy]`` table (verification thresholds),
    ``reference`` the ``[reference]`` table (the recipe that retrains the depth reference:
    ``lethe.models.fit`` arguments such as ``epochs``, ``lr``, plus ``seeds``) and ``erase`` the
    ``[erase]`` table (``lethe.filters.EraseConfig`` fields for phase 2).
    """

    project_dir: Path
    database_url: str = ""
    key_dir: Path | None = None
    origin: str = ""
    due_days: int = 30
    key_passphrase: str | None = field(default=None, repr=False)
    policy: Mapping[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    reference: Mapping[str, Any] = field(default_factory=dict)
    erase: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pdir = Path(self.project_dir).expanduser().resolve()
        object.__setattr__(self, "project_dir", pdir)
        url = self.database_url or f"sqlite:///{pdir / 'lethe.db'}"
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url.removeprefix("sqlite:///")
            if rel and rel != ":memory:" and not Path(rel).is_absolute():
                url = f"sqlite:///{(pdir / rel).resolve()}"
        object.__setattr__(self, "database_url", url)
        kdir = Path(self.key_dir).expanduser() if self.key_dir is not None else pdir / "keys"
        object.__setattr__(self, "key_dir", kdir if kdir.is_absolute() else (pdir / kdir).resolve())
        origin = self.origin or f"lethe.local/{pdir.name or 'log'}"
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"log origin {origin!r} must be one token of letters, digits and . _ / - "
                "(e.g. example.com/lethe-log)"
            )
        object.__setattr__(self, "origin", origin)
        if not isinstance(self.due_days, int) or not 1 <= self.due_days <= 366:
            raise ConfigError(
                f"due_days must be a whole number of days in 1..366, got {self.due_days!r}"
            )
        object.__setattr__(self, "policy", dict(self.policy))
        object.__setattr__(self, "reference", dict(self.reference))
        object.__setattr__(self, "erase", dict(self.erase))

    @property
    def keys(self) -> Path:
        if self.key_dir is None:  # __post_init__ always sets it
            raise ConfigError("the project's key folder is not set")
        return self.key_dir

    @property
    def models_dir(self) -> Path:
        return self.project_dir / "models"

    @classmethod
    def load(
        cls,
        project_dir: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Resolve settings: explicit ``overrides`` > environment (``LETHE_*``) > the TOML file
        (``config``, ``$LETHE_CONFIG`` or ``<project_dir>/lethe.toml``) > defaults."""
        environ = os.environ if env is None else env
        from_env = {attr: environ[var] for var, attr in _ENV.items() if environ.get(var)}
        pdir = Path(project_dir or from_env.pop("project_dir", None) or Path.cwd())
        from_env.pop("project_dir", None)
        cfg_path = (
            Path(config)
            if config
            else (
                Path(environ["LETHE_CONFIG"]) if environ.get("LETHE_CONFIG") else pdir / CONFIG_NAME
            )
        )
        file_values: dict[str, Any] = {}
        policy: dict[str, Any] = {}
        tables: dict[str, dict[str, Any]] = {}
        used: Path | None = None
        if cfg_path.is_file():
            file_values, policy, tables = _read_toml(cfg_path)
            used = cfg_path
        elif config is not None:
            raise ConfigError(f"{cfg_path}: config file not found")
        values: dict[str, Any] = {**file_values, **from_env}
        values.update({k: v for k, v in overrides.items() if v is not None and k != "policy"})
        if overrides.get("policy"):
            policy = {**policy, **overrides["policy"]}
        unknown = set(values) - _FIELDS - {"key_passphrase"}
        if unknown:
            raise ConfigError(f"unknown settings {sorted(unknown)}")
        values.pop("secrets_dir", None)
        return cls(
            project_dir=pdir,
            policy=policy,
            config_file=used,
            reference=tables.get("reference", {}),
            erase=tables.get("erase", {}),
            **values,
        )

    def with_policy(self, policy: Mapping[str, Any]) -> Settings:
        return replace(self, policy={**self.policy, **policy})

    def to_toml(self) -> str:
        """The ``lethe.toml`` that reproduces these settings (paths relative when inside)."""

        def rel(p: Path) -> str:
            try:
                return str(p.relative_to(self.project_dir))
            except ValueError:
                return str(p)

        url = self.database_url
        db = self.project_dir / "lethe.db"
        if url == f"sqlite:///{db}":
            url = "sqlite:///lethe.db"
        lines = [
            "# Lethe project settings. Environment variables LETHE_DATABASE_URL, LETHE_KEY_DIR,",
            "# LETHE_LOG_ORIGIN override these; command-line options override both.",
            "[lethe]",
            f'database_url = "{url}"',
            f'key_dir = "{rel(self.keys)}"',
            f'origin = "{self.origin}"',
            f"due_days = {self.due_days}",
            "",
            "# Verification thresholds an apply must meet (see docs/metrics.md).",
            "[policy]",
        ]
        lines += _toml_items(self.policy)
        for table, items in (("reference", self.reference), ("erase", self.erase)):
            if items:
                lines += ["", f"[{table}]", *_toml_items(items)]
        return "\n".join(lines) + "\n"


def _toml_items(items: Mapping[str, Any]) -> list[str]:
    return [
        f"{k} = {str(v).lower()}" if isinstance(v, bool) else f"{k} = {v!r}"
        for k, v in sorted(items.items())
    ]


def _read_toml(
    path: Path,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read TOML ({exc})") from exc
    unknown_tables = set(data) - {"lethe", "policy", "reference", "erase"}
    if unknown_tables:
        raise ConfigError(
            f"{path}: unknown tables {sorted(unknown_tables)} "
            "(expected [lethe], [policy], [reference], [erase])"
        )
    lethe = dict(data.get("lethe", {}))
    unknown = set(lethe) - _FIELDS
    if unknown:
        raise ConfigError(f"{path}: unknown keys in [lethe]: {sorted(unknown)}")
    tables = {t: dict(data.get(t, {})) for t in ("reference", "erase")}
    return lethe, dict(data.get("policy", {})), tables

"""Creating (or completing) a project on disk: what :meth:`lethe.Lethe.init` does before it
opens the project. Idempotent: every step checks what exists first."""

from __future__ import annotations

from lethe.workflow._settings import CONFIG_NAME, Settings
from lethe_audit.errors import LogStateError
from lethe_audit.keys import KeyRing
from lethe_audit.log import AuditLog
from lethe_audit.store import create_engine, upgrade

__all__ = ["create_project"]


def create_project(settings: Settings) -> None:
    """The folders, ``lethe.toml``, the database schema, the log's signing key, the log's first
    checkpoint and the OpenSSF export key; each only when missing."""
    settings.project_dir.mkdir(parents=True, exist_ok=True)
    cfg = settings.project_dir / CONFIG_NAME
    if not cfg.exists():
        cfg.write_text(settings.to_toml(), encoding="utf-8")
    upgrade(settings.database_url)
    if not (settings.keys / "keyring.json").exists():
        KeyRing.create(settings.keys, name=settings.origin, passphrase=settings.key_passphrase)
    _initialize_log(settings, KeyRing.open(settings.keys))
    from lethe_audit.keys import ensure_openssf_key

    # OpenSSF signatures of exports (logged at the first); encrypted like the log keys
    ensure_openssf_key(settings.keys, passphrase=settings.key_passphrase)


def _initialize_log(settings: Settings, ring: KeyRing) -> None:
    """Write the log's first checkpoint unless it has one."""
    engine = create_engine(settings.database_url)
    try:
        log = AuditLog(engine, signers=ring.signers(passphrase=settings.key_passphrase))
        try:
            log.size()
        except LogStateError:
            log.initialize(origin=settings.origin)
    finally:
        engine.dispose()

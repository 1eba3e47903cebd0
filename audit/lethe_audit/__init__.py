"""lethe_audit: verify Lethe's signed deletion log and exported models, without PyTorch.

Subpackages (import the one you need; this package imports nothing heavy):

- :mod:`lethe_audit.tlog` — RFC 6962 Merkle trees, proofs, C2SP checkpoints and tlog-proofs
- :mod:`lethe_audit.note` — C2SP signed notes with Ed25519 keys
- :mod:`lethe_audit.statements` — DSSE envelopes, in-toto statements, Lethe's predicates
- :mod:`lethe_audit.keys` — key files and key directories
- :mod:`lethe_audit.store` — SQLAlchemy models, engine factory, migrations
- :mod:`lethe_audit.log` — the log service (:class:`~lethe_audit.log.AuditLog`)
- :mod:`lethe_audit.verify` — offline verification of bundles and receipts, policies
- :mod:`lethe_audit.metrics` — verification metrics on onnxruntime
- :mod:`lethe_audit.model` — signed ONNX models
- :mod:`lethe_audit.report` — auditor reports (HTML, PDF, JSON) and receipt pages
- :mod:`lethe_audit.cli` — the ``lethe-audit`` command line
- :mod:`lethe_audit.errors` — every exception (root :class:`~lethe_audit.errors.LetheAuditError`)
"""

from lethe_audit._version import __version__

__all__ = ["__version__"]

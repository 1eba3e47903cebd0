"""Offline verification: auditor bundles, deletion receipts, and policies.

Needs only the log's public key(s) (vkey strings, :meth:`lethe_audit.note.Verifier.from_vkey`)
and no database. Every function returns None or raises a
:class:`~lethe_audit.errors.VerificationError` subclass naming the entry / checkpoint at fault;
:func:`read_verified_bundle` verifies the same way and returns what it verified
(:class:`VerifiedBundle`), so that a reader such as the report does not parse the bundle twice.
"""

from __future__ import annotations

# The bundle format is lethe_audit.bundle (the writer uses it too); re-exported for readers.
from lethe_audit.bundle import BUNDLE_FORMAT, BUNDLE_VERSION, Attachment, FileDigest, Manifest
from lethe_audit.verify._bundle import (
    VerifiedBundle,
    VerifiedCheckpoint,
    read_manifest,
    read_verified_bundle,
    verify_bundle,
)
from lethe_audit.verify._entry import VerifiedEntry, check_entry, known_keys
from lethe_audit.verify._policies import (
    AllOf,
    AnyOf,
    ConsistentWith,
    DeadlinesMet,
    LogView,
    MetricThreshold,
    Policy,
)
from lethe_audit.verify._receipt import Receipt, parse_receipt, verify_receipt
from lethe_audit.verify._snapshot import BundleSnapshot, open_bundle
from lethe_audit.verify._windows import KeyWindows

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "AllOf",
    "AnyOf",
    "Attachment",
    "BundleSnapshot",
    "ConsistentWith",
    "DeadlinesMet",
    "FileDigest",
    "KeyWindows",
    "LogView",
    "Manifest",
    "MetricThreshold",
    "Policy",
    "Receipt",
    "VerifiedBundle",
    "VerifiedCheckpoint",
    "VerifiedEntry",
    "check_entry",
    "known_keys",
    "open_bundle",
    "parse_receipt",
    "read_manifest",
    "read_verified_bundle",
    "verify_bundle",
    "verify_receipt",
]

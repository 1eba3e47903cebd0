"""Verification metrics on torch models (DESIGN §4).

The metric definitions, :func:`lethe_audit.metrics.evaluate`, the result object and the policy
live in :mod:`lethe_audit.metrics` (torch-free, shared with auditors). This package adds the
torch backend: any classifier ``nn.Module`` (timm model or plain CNN), with penultimate
features for the probe, a seeded random re-initialisation for ZRF and relearn time.
"""

from __future__ import annotations

from lethe.metrics._torch import RANDOM_TORCH_SCHEME, TorchBackend, randomized_copy

__all__ = ["RANDOM_TORCH_SCHEME", "TorchBackend", "randomized_copy"]

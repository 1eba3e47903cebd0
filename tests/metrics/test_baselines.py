"""Why accuracy alone is not evidence of forgetting (DESIGN §3, §4).

Masking the classifier head zeroes one logit: forget accuracy drops to 0 and retain accuracy
is untouched, so the accuracy checks pass, yet every feature the model computes is exactly what
it was, and a linear probe on them still finds the forgotten class as well as on the
unfiltered model. The feature probe (and ZRF, MIA, relearn time) exist to expose this.
"""

from __future__ import annotations

from torch import nn

from lethe.metrics import TorchBackend
from lethe_audit.metrics import Policy, evaluate

from .conftest import FORGET, Digits, head_masked

# The torch-only checks (no ONNX model in these tests): the default policy minus parity.
ACCURACY_ONLY = Policy(max_parity=None)


def test_unfiltered_model_fails_the_default_policy(cnn: nn.Module, digits: Digits) -> None:
    base = TorchBackend(cnn)
    result = evaluate(base, digits.test, forget=[FORGET], base=base, progress=False)
    verdict = ACCURACY_ONLY.evaluate(result)
    assert not verdict.passed
    assert result.accuracy.forget_accuracy > 0.9
    assert len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("forget accuracy ")
    assert verdict.reasons[0].endswith(" > 0.01")


def test_head_masking_passes_accuracy_but_the_probe_still_sees_the_class(
    cnn: nn.Module, cnn_retrained: nn.Module, digits: Digits
) -> None:
    head = cnn[-1]  # type: ignore[index]
    assert isinstance(head, nn.Linear)
    masked = TorchBackend(head_masked(cnn, head, [FORGET]))
    result = evaluate(
        masked,
        digits.test,
        forget=[FORGET],
        base=TorchBackend(cnn),
        train_set=digits.train,
        retrained=TorchBackend(cnn_retrained),
        seed=0,
        progress=False,
    )
    acc = result.accuracy
    # The accuracy checks pass: the class is never predicted, nothing else got worse.
    assert acc.forget_accuracy == 0.0
    assert acc.retain_drop is not None and acc.retain_drop <= 0.0
    assert ACCURACY_ONLY.evaluate(result).passed
    # ... but the representation is untouched: the probe separates the class exactly as well.
    probe = result.probe
    assert probe is not None and probe.base_auc is not None
    assert probe.auc >= probe.base_auc
    assert probe.auc > 0.95
    assert probe.feature_dim == 64 and probe.test_positives > 10
    # A policy that gates on the probe rejects the baseline.
    assert not Policy(max_parity=None, max_probe_auc=0.9).evaluate(result).passed

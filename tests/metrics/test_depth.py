"""Relearn over several seeds, the depth metric against a reference, and the erase-phase policy.

The model is the transparent identity network of test_evaluate_policy (its images are its
logits); its relearn time is a known function of the samples it is fine-tuned on, so medians and
ratios can be checked by hand.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from lethe_audit.errors import MetricsError, PolicyConfigError, ResultFormatError
from lethe_audit.metrics import (
    DepthMetric,
    ImageSet,
    MetricsResult,
    Policy,
    ReferenceInfo,
    RelearnConfig,
    RelearnRun,
    depth_metric,
    evaluate,
    median_run,
)
from lethe_audit.statements import Phase

K = 4
FORGET = 1


class Relearner:
    """Identity logits; relearn "takes" 1 + (sum of the given samples' ids) % 9 steps.

    Each training image carries its sample id in column 0 (scaled by 1e-3), so the steps tell
    which samples a run was given.
    """

    kind = "relearner"

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def logits(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        return images.reshape(images.shape[0], -1)

    def features(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        return images.reshape(images.shape[0], -1)

    def relearn(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        test_images: np.ndarray,
        test_labels: np.ndarray,
        *,
        config: RelearnConfig,
        seed: int,
        progress: bool = False,
    ) -> RelearnRun:
        ids = tuple(sorted(round(float(v) * 1000) for v in train_images[:, 0]))
        self.calls.append(ids)
        steps = 1 + sum(ids) % 9
        return RelearnRun(True, steps, tuple([0.0] * steps + [1.0]))


def _sets() -> tuple[ImageSet, ImageSet]:
    train_labels = np.repeat(np.arange(K), 20)
    train = np.zeros((train_labels.size, K), dtype=np.float32)
    train[np.arange(train_labels.size), train_labels] = 5.0
    train[:, 0] = np.arange(train_labels.size, dtype=np.float32) / 1000  # the sample id
    test_labels = np.repeat(np.arange(K), 4)
    test = np.zeros((test_labels.size, K), dtype=np.float32)
    test[np.arange(test_labels.size), np.where(test_labels == FORGET, 2, test_labels)] = 5.0
    return ImageSet(train, train_labels, K), ImageSet(test, test_labels, K)


def _measure(seeds: int, seed: int = 0, model: Relearner | None = None) -> MetricsResult:
    train, test = _sets()
    return evaluate(
        model or Relearner(),
        test,
        forget=[FORGET],
        train_set=train,
        relearn=RelearnConfig(seeds=seeds),
        seed=seed,
        progress=False,
    )


def reference(**changes: Any) -> ReferenceInfo:
    values: dict[str, Any] = {
        "kind": "retrain-holdout",
        "classes": (7,),
        "model_sha256": "ab" * 32,
        "recipe": '{"epochs":3,"lr":0.001}',
        "seconds": 12.5,
        "created_at": "2026-12-01T23:00:00Z",
        "relearn_steps": 4.0,
        "relearn_runs": (3, 4, 6),
        "probe_auc": 0.95,
        "seeds": (0, 1, 2),
    }
    values.update(changes)
    return ReferenceInfo(**values)


# --- relearn over seeds ---------------------------------------------------------------------


def test_relearn_seeds_repeat_with_other_samples_and_report_the_median() -> None:
    model = Relearner()
    result = _measure(3, seed=5, model=model)
    r = result.relearn
    assert r is not None and len(r.model_runs) == 3 and r.runs == r.model_runs
    assert len(set(model.calls)) == 3  # each run fine-tunes on other samples
    # Run i is exactly what a single-seed measurement with seed + i gives.
    for i, run in enumerate(r.model_runs):
        single = _measure(1, seed=5 + i).relearn
        assert single is not None and single.model == run and single.model_runs == (run,)
    steps = sorted(run.steps for run in r.model_runs)
    assert r.model.steps == steps[1] and r.steps == float(steps[1])
    assert r.train_samples == 5  # per run; the digest covers the samples of all runs
    assert r.train_digest != _measure(1, seed=5).relearn.train_digest  # type: ignore[union-attr]


def test_median_run_orders_unreached_runs_last_and_takes_the_lower_middle() -> None:
    reached = RelearnRun(True, 10, (0.0,) * 10 + (1.0,))
    capped = RelearnRun(False, 10, (0.0,) * 11)
    short = RelearnRun(True, 2, (0.0, 0.0, 1.0))
    assert median_run((capped, short, reached)) == reached
    assert median_run((capped, reached)) == reached  # lower middle of two
    assert median_run((short,)) == short
    with pytest.raises(MetricsError):
        median_run(())


@pytest.mark.parametrize("seeds", [0, -1, True, 1.5])
def test_relearn_seeds_must_be_a_positive_integer(seeds: Any) -> None:
    with pytest.raises(MetricsError, match="seeds"):
        RelearnConfig(seeds=seeds)


def test_results_written_before_seeds_and_depth_still_parse() -> None:
    result = _measure(1)
    old = json.loads(json.dumps(result.to_dict()))
    del old["depth"]
    del old["relearn"]["model_runs"]
    del old["relearn"]["config"]["seeds"]
    back = MetricsResult.from_dict(old)
    assert back.depth is None and back.relearn is not None
    assert back.relearn.model_runs == () and back.relearn.runs == (back.relearn.model,)
    assert back.relearn.config.seeds == 1
    assert back.relearn.steps == float(back.relearn.model.steps)
    # A key without a default is still required.
    del old["relearn"]["config"]["lr"]  # has a default too
    assert MetricsResult.from_dict(old).relearn.config.lr == 1e-3  # type: ignore[union-attr]
    del old["relearn"]["seed"]
    with pytest.raises(ResultFormatError, match="matches none of"):
        MetricsResult.from_dict(old)


# --- reference and depth --------------------------------------------------------------------


def test_depth_metric_against_the_reference_round_trips() -> None:
    result = _measure(3)
    assert result.relearn is not None
    ref = reference()
    depth = depth_metric(result, ref)
    assert depth.relearn_runs == tuple(r.steps for r in result.relearn.model_runs)
    assert depth.relearn_steps == result.relearn.steps
    assert depth.relearn_ratio == pytest.approx(result.relearn.steps / 4.0)
    assert depth.probe_auc is None and depth.probe_auc_gap is None  # 4 forget samples: no probe
    full = dataclasses.replace(result, depth=depth)
    text = json.dumps(full.to_dict(), allow_nan=False, sort_keys=True)
    back = MetricsResult.from_dict(json.loads(text))
    assert back == full and back.depth == depth
    assert ReferenceInfo.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    assert DepthMetric.from_dict(json.loads(json.dumps(depth.to_dict()))) == depth
    assert full.to_dict()["depth"]["reference"]["kind"] == "retrain-holdout"


def test_depth_probe_gap_is_the_difference_of_aucs() -> None:
    result = _measure(1)
    probe = _probe(auc=0.97)
    depth = depth_metric(dataclasses.replace(result, probe=probe), reference(probe_auc=0.955))
    assert depth.probe_auc == 0.97 and depth.probe_auc_gap == pytest.approx(0.015)
    no_ref_probe = depth_metric(dataclasses.replace(result, probe=probe), reference(probe_auc=None))
    assert no_ref_probe.probe_auc == 0.97 and no_ref_probe.probe_auc_gap is None


def test_depth_needs_relearn_time() -> None:
    train, test = _sets()
    result = evaluate(Relearner(), test, forget=[FORGET], train_set=train, progress=False)
    with pytest.raises(MetricsError, match="not requested"):
        depth_metric(result, reference())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model_sha256": "sha256:" + "ab" * 32}, "64 lowercase hex"),
        ({"classes": ()}, "class ids"),
        ({"classes": (3, 1)}, "sorted"),
        ({"created_at": "yesterday"}, "RFC 3339"),
        ({"relearn_steps": 0.0}, "at least one relearn step"),
        ({"relearn_runs": (3, 4)}, "one relearn run per seed"),
        ({"probe_auc": 1.5}, r"\[0, 1\]"),
        ({"seconds": -1.0}, "seconds"),
        ({"kind": ""}, "kind"),
    ],
)
def test_reference_info_rejects_bad_provenance(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(MetricsError, match=match):
        reference(**changes)


def test_reference_from_dict_rejects_malformed_data() -> None:
    data = reference().to_dict()
    data["relearn_steps"] = "4"
    with pytest.raises(ResultFormatError, match="expected a number"):
        ReferenceInfo.from_dict(data)
    data = reference().to_dict()
    data["owner"] = "alice"
    with pytest.raises(ResultFormatError, match="unknown keys"):
        ReferenceInfo.from_dict(data)


# --- the erase-phase policy ------------------------------------------------------------------


def _probe(auc: float) -> Any:
    from lethe_audit.metrics import ProbeMetric

    return ProbeMetric(auc, None, None, 70, 30, 3, 4, "test probe", "sha256:" + "0" * 64, 0)


def _policy() -> Policy:
    # Only the depth checks (the output checks have their own tests).
    return Policy(max_forget_accuracy=None, max_retain_drop=None, max_parity=None)


def _with_depth(ratio_steps: float, probe_auc: float | None, ref_auc: float | None) -> Any:
    result = _measure(1)
    if probe_auc is not None:
        result = dataclasses.replace(result, probe=_probe(probe_auc))
    assert result.relearn is not None
    ref = reference(relearn_steps=result.relearn.steps / ratio_steps, probe_auc=ref_auc)
    return dataclasses.replace(result, depth=depth_metric(result, ref))


def test_policy_defaults_for_depth() -> None:
    assert Policy().min_relearn_ratio == 0.5 and Policy().max_probe_auc_gap == 0.02
    assert {"min_relearn_ratio", "max_probe_auc_gap"} <= set(Policy.keys())


def test_erase_policy_passes_a_deep_result() -> None:
    result = _with_depth(1.2, 0.96, 0.95)
    verdict = _policy().evaluate(result, phase=Phase.ERASE)
    assert verdict.passed, verdict.reasons
    names = {c.name: c for c in verdict.checks}
    assert names["min_relearn_ratio"].value == pytest.approx(1.2)
    assert names["max_probe_auc_gap"].value == pytest.approx(0.01)
    assert _policy().evaluate(result, phase="erase") == verdict  # the string works too


def test_erase_policy_fails_a_shallow_result_with_reasons() -> None:
    result = _with_depth(0.25, 0.99, 0.95)
    verdict = _policy().evaluate(result, phase=Phase.ERASE)
    assert not verdict.passed
    assert verdict.reasons == (
        "relearn ratio to the reference 0.25 < 0.5",
        "probe AUC gap to the reference 0.04 > 0.02",
    )


def test_erase_policy_fails_when_depth_is_missing() -> None:
    result = _measure(1)  # relearn measured, no depth attached
    verdict = _policy().evaluate(result, phase=Phase.ERASE)
    assert not verdict.passed
    assert [c.name for c in verdict.checks if not c.passed] == [
        "min_relearn_ratio",
        "max_probe_auc_gap",
    ]
    assert all("no depth reference" in r for r in verdict.reasons)
    # A depth without a probe gap fails the gap check and says why.
    gapless = _with_depth(1.0, 0.96, None)
    reasons = _policy().evaluate(gapless, phase=Phase.ERASE).reasons
    assert reasons == (
        "probe AUC gap to the reference not measured: the reference has no probe AUC",
    )
    # Turned off explicitly, nothing is checked.
    off = Policy(max_forget_accuracy=None, max_retain_drop=None, max_parity=None,
                 min_relearn_ratio=None, max_probe_auc_gap=None)  # fmt: skip
    assert off.evaluate(result, phase=Phase.ERASE).passed


def test_mask_phase_ignores_depth() -> None:
    shallow = _with_depth(0.25, 0.99, 0.95)
    for result in (shallow, _measure(1)):
        verdict = _policy().evaluate(result)
        assert verdict.passed and verdict.checks == ()
        assert _policy().evaluate(result, phase=Phase.MASK) == verdict


def test_policy_depth_thresholds_are_validated_and_configurable() -> None:
    with pytest.raises(PolicyConfigError, match="min_relearn_ratio"):
        Policy(min_relearn_ratio=-1)
    with pytest.raises(PolicyConfigError, match="max_probe_auc_gap"):
        Policy(max_probe_auc_gap=float("nan"))
    p = Policy.from_mapping({"min_relearn_ratio": 1, "max_probe_auc_gap": "off"})
    assert p.min_relearn_ratio == 1.0 and p.max_probe_auc_gap is None
    assert p.to_dict()["min_relearn_ratio"] == 1.0
    with pytest.raises(PolicyConfigError, match="phase"):
        Policy().evaluate(_measure(1), phase="erased")

"""evaluate(), the result object and the policy, on models with known outputs.

The model here is real but transparent: its "images" are its logits (the identity network), so
every metric has a value that can be checked by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
from click.testing import CliRunner

from lethe_audit.cli.metric_policy import policy_options
from lethe_audit.errors import (
    BackendError,
    EvaluationSetError,
    ForgetClassError,
    PolicyConfigError,
    PolicyError,
    ResultFormatError,
)
from lethe_audit.metrics import (
    RESULT_FORMAT,
    ImageSet,
    MetricsResult,
    Policy,
    RelearnConfig,
    Verdict,
    evaluate,
)

K = 4


class Identity:
    """A network whose output is its input: logits (and features) = the image vector."""

    def __init__(self, kind: str = "identity", width: int | None = None) -> None:
        self.kind = kind
        self.width = width

    def logits(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        z = images.reshape(images.shape[0], -1)
        return z[:, : self.width] if self.width else z

    def features(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        return images.reshape(images.shape[0], -1)


def onehot(pred: list[int], scale: float = 5.0) -> np.ndarray:
    z = np.zeros((len(pred), K), dtype=np.float32)
    z[np.arange(len(pred)), pred] = scale
    return z


# 16 test samples, 4 per class; class 1 is forgotten.
LABELS = np.repeat(np.arange(K), 4)
# The "filtered" model: class 1 never predicted; one class-3 sample wrong.
FILTERED = [0, 0, 0, 0, 2, 2, 0, 2, 2, 2, 2, 2, 3, 3, 3, 0]
# The "base" model: everything right.
BASE = list(LABELS)


def eval_set(pred: list[int]) -> ImageSet:
    return ImageSet(onehot(pred), LABELS, K)


def test_accuracy_and_deltas_by_hand() -> None:
    # The identity model reads its predictions off the images, so the base model needs its own
    # images: evaluate the base on the same labels via a second set and compare by hand.
    result = evaluate(Identity(), eval_set(FILTERED), forget=[1], progress=False)
    acc = result.accuracy
    assert acc.forget_accuracy == 0.0
    assert acc.retain_accuracy == 11 / 12
    assert acc.per_class == (1.0, 0.0, 1.0, 0.75)
    assert acc.class_counts == (4, 4, 4, 4)
    assert (acc.forget_samples, acc.retain_samples) == (4, 12)
    assert acc.base_forget_accuracy is None and acc.retain_drop is None
    assert result.forget_classes == (1,)
    assert result.dataset_digest == acc.dataset_digest == eval_set(FILTERED).digest


class Fixed:
    """A model that outputs fixed logits per sample index (for a base beside the identity)."""

    kind = "fixed"

    def __init__(self, logits: np.ndarray) -> None:
        self._z = logits

    def logits(self, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
        assert images.shape[0] == self._z.shape[0]
        return self._z


def test_deltas_against_the_base_model() -> None:
    result = evaluate(
        Identity(), eval_set(FILTERED), forget=[1], base=Fixed(onehot(BASE)), progress=False
    )
    acc = result.accuracy
    assert acc.base_forget_accuracy == 1.0 and acc.base_retain_accuracy == 1.0
    assert acc.forget_delta == -1.0
    assert acc.retain_delta == pytest.approx(-1 / 12)
    assert acc.retain_drop == pytest.approx(1 / 12)
    assert acc.per_class_delta == (0.0, -1.0, 0.0, -0.25)


def test_forget_class_without_samples_is_an_error_or_an_explicit_warning() -> None:
    data = eval_set(FILTERED)
    with pytest.raises(ForgetClassError, match=r"\[2\] have no evaluation samples"):
        # classes 1 and 2 forgotten, but class 2 is dropped from the evaluation set below
        evaluate(Identity(), _without(data, 2), forget=[1, 2], progress=False)
    result = evaluate(
        Identity(),
        _without(data, 2),
        forget=[1, 2],
        allow_unevaluated_classes=True,
        progress=False,
    )
    assert result.accuracy.unevaluated_forget_classes == (2,)
    assert any("[2]" in w for w in result.warnings)
    assert result.accuracy.per_class[2] is None
    # The default policy does not accept an unevaluated forgotten class; it must be allowed.
    verdict = Policy(max_retain_drop=None, max_parity=None).evaluate(result)
    assert not verdict.passed
    assert verdict.reasons == ("forgotten classes [2] have no evaluation samples",)
    assert (
        Policy(max_retain_drop=None, max_parity=None, allow_unevaluated_classes=True)
        .evaluate(result)
        .passed
    )


def test_forgotten_classes_all_without_samples_is_always_an_error() -> None:
    with pytest.raises(ForgetClassError, match="no samples of the forgotten classes"):
        evaluate(
            Identity(),
            _without(eval_set(FILTERED), 1),
            forget=[1],
            allow_unevaluated_classes=True,
            progress=False,
        )


def _without(data: ImageSet, cls: int) -> ImageSet:
    keep = data.labels != cls
    return ImageSet(data.images[keep], data.labels[keep], data.num_classes)


@pytest.mark.parametrize(
    ("forget", "error", "match"),
    [
        ([], ForgetClassError, "at least one"),
        ([4], ForgetClassError, r"outside \[0, 4\)"),
        ([-1], ForgetClassError, "outside"),
        ([0, 1, 2, 3], ForgetClassError, "every class"),
        ([True], ForgetClassError, "integer"),
    ],
)
def test_bad_forget_sets(forget: list[Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate(Identity(), eval_set(FILTERED), forget=forget, progress=False)


def test_evaluation_set_with_only_forgotten_classes() -> None:
    only = ImageSet(onehot([1, 1]), np.array([1, 1]), K)
    with pytest.raises(EvaluationSetError, match="only holds forgotten classes"):
        evaluate(Identity(), only, forget=[1], progress=False)


def test_model_with_the_wrong_number_of_outputs() -> None:
    with pytest.raises(BackendError, match="head have 4 outputs"):
        evaluate(Identity(width=3), eval_set(FILTERED), forget=[1], progress=False)


def _mia_sets() -> tuple[ImageSet, ImageSet]:
    # Logit scale sets the confidence of the true label: training samples of retained classes
    # are confident (members), test samples are not (non-members).
    train_labels = np.repeat(np.arange(K), 6)
    train = onehot(list(train_labels), scale=8.0)  # confidence ~0.999
    forget_rows = train_labels == 1
    train[forget_rows] = 0.0  # the forgotten class's training samples: uniform, conf 0.25
    test = onehot(list(LABELS), scale=0.5)  # confidence ~0.37
    return ImageSet(train, train_labels, K), ImageSet(test, LABELS, K)


def test_mia_efficacy_through_evaluate() -> None:
    train, test = _mia_sets()
    result = evaluate(Identity(), test, forget=[1], train_set=train, seed=3, progress=False)
    assert result.mia is not None
    assert result.mia.efficacy == 1.0  # forgotten training samples look like test samples
    assert (result.mia.members, result.mia.non_members, result.mia.targets) == (12, 12, 6)
    assert result.mia.train_digest == train.digest and result.mia.seed == 3
    assert result.mia.base_efficacy is None


def test_skipped_metrics_say_why() -> None:
    result = evaluate(Identity(), eval_set(FILTERED), forget=[1], progress=False)
    skipped = dict(result.skipped)
    assert result.zrf is None and "cannot build a random model" in skipped["zrf"]
    assert result.mia is None and "no training data" in skipped["mia"]
    assert result.relearn is None and "not requested" in skipped["relearn"]
    assert result.parity is None and "no second copy" in skipped["parity"]
    # the identity model has features, but 4 forget samples are too few for a held-out probe
    assert result.probe is None and "at least 10" in skipped["probe"]
    train, test = _mia_sets()
    relearned = evaluate(
        Identity(), test, forget=[1], train_set=train, relearn=RelearnConfig(), progress=False
    )
    assert "cannot be fine-tuned" in dict(relearned.skipped)["relearn"]


def test_zrf_and_parity_with_given_reference_models() -> None:
    data = eval_set(FILTERED)
    result = evaluate(
        Identity(),
        data,
        forget=[1],
        random_model=Identity("random"),
        parity_reference=Fixed(data.images + np.float32(0.25)),
        progress=False,
    )
    assert result.zrf is not None and result.zrf.zrf == 1.0  # "random" model = the model
    assert result.zrf.samples == 4 and "given by the caller" in result.zrf.random_model
    assert result.parity is not None
    assert result.parity.max_abs_logit_diff == 0.25 and result.parity.reference == "fixed"


def _full_result() -> MetricsResult:
    train, test = _mia_sets()
    return evaluate(
        Identity(),
        test,
        forget=[1],
        base=Identity("base"),
        train_set=train,
        random_model=Identity("random"),
        parity_reference=Identity("onnx"),
        seed=7,
        progress=False,
    )


def test_result_round_trips_through_json() -> None:
    result = _full_result()
    text = json.dumps(result.to_dict(), allow_nan=False, sort_keys=True)
    back = MetricsResult.from_dict(json.loads(text))
    assert back == result
    assert back.to_dict() == result.to_dict()
    assert result.to_dict()["format"] == RESULT_FORMAT
    assert isinstance(result.to_dict()["skipped"], dict)
    # Deterministic: the same inputs and seed give the same bytes.
    assert json.dumps(_full_result().to_dict(), sort_keys=True) == text


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format="lethe.metrics.v0"), "unknown metrics result format"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.pop("accuracy"), "missing keys"),
        (lambda d: d["accuracy"].update(forget_accuracy="0.0"), "expected a number"),
        (lambda d: d.update(forget_classes=[1.5]), "forget_classes"),
        (lambda d: d.update(seed=True), "expected an integer"),
    ],
)
def test_result_from_dict_rejects_malformed_data(mutate: Any, match: str) -> None:
    data = json.loads(json.dumps(_full_result().to_dict()))
    mutate(data)
    with pytest.raises(ResultFormatError, match=match):
        MetricsResult.from_dict(data)


# --- policy ---------------------------------------------------------------------------------


def test_default_policy_reasons_read_like_sentences() -> None:
    data = eval_set(FILTERED)
    # forget accuracy 0.25: one class-1 sample predicted right
    pred = list(FILTERED)
    pred[4] = 1
    result = evaluate(
        Identity(), eval_set(pred), forget=[1], base=Fixed(onehot(BASE)), progress=False
    )
    verdict = Policy().evaluate(result)
    assert not verdict.passed
    assert verdict.reasons == (
        "forget accuracy 0.25 > 0.01",
        "retain accuracy drop 0.08333 > 0.02",
        "ONNX parity max |Δlogit| not measured: no exported ONNX model was compared with it "
        '(where none is expected, turn the check off: max_parity = "off")',
    )
    with pytest.raises(PolicyError) as info:
        Policy().check(result)
    assert info.value.reasons == verdict.reasons
    assert Verdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
    # Passing: base equal to the model, parity measured exactly.
    ok = evaluate(
        Identity(),
        data,
        forget=[1],
        base=Identity("base"),
        parity_reference=Identity("onnx"),
        progress=False,
    )
    assert Policy().evaluate(ok).passed
    assert Policy().check(ok) is None


def test_retain_drop_equal_to_the_threshold_up_to_rounding_passes() -> None:
    # 0.985 − 0.965 is 0.020000000000000018 in floats; "≤ 0.02" must hold.
    n = 200
    labels = np.arange(n) % 2
    base_pred = labels.copy()
    base_pred[:3] = 1 - base_pred[:3]  # base retain accuracy on class 0 ...
    model_pred = base_pred.copy()
    zeros = np.flatnonzero(labels == 0)
    model_pred[zeros[3:5]] = 1  # ... 2 more class-0 errors out of 100: drop exactly 0.02
    z = lambda p: np.eye(2, dtype=np.float32)[p] * 3  # noqa: E731
    result = evaluate(
        Identity(),
        ImageSet(z(model_pred), labels, 2),
        forget=[1],
        base=Fixed(z(base_pred)),
        progress=False,
    )
    assert result.accuracy.retain_drop == pytest.approx(0.02)
    assert Policy(max_forget_accuracy=None, max_parity=None).evaluate(result).passed


def test_optional_thresholds_gate_their_metrics() -> None:
    result = _full_result()
    assert result.zrf is not None and result.mia is not None
    strict = Policy(
        max_forget_accuracy=None,
        max_retain_drop=None,
        max_parity=None,
        min_zrf=1.0,
        min_mia_efficacy=1.0,
        min_relearn_steps=3,
    )
    verdict = strict.evaluate(result)
    # zrf 1 and MIA efficacy 1 pass; relearn was not measured, so its check fails.
    assert [c.name for c in verdict.checks if not c.passed] == ["min_relearn_steps"]
    assert verdict.reasons[0].startswith("relearn steps not measured: not requested")
    assert result.probe is None  # too few samples
    probe_check = Policy(max_forget_accuracy=None, max_parity=None, max_probe_auc=0.5)
    assert probe_check.evaluate(result).reasons == (
        "feature probe AUC not measured: " + dict(result.skipped)["probe"],
    )


def test_policy_from_mapping_and_validation() -> None:
    p = Policy.from_mapping({"max_forget_accuracy": 0.05, "max_parity": "off", "min_zrf": 0.3})
    assert p == Policy(max_forget_accuracy=0.05, max_parity=None, min_zrf=0.3)
    assert p.to_dict()["max_parity"] is None
    with pytest.raises(PolicyConfigError, match="unknown policy keys"):
        Policy.from_mapping({"max_forget_acc": 0.1})
    for bad in (
        {"max_forget_accuracy": 1.5},
        {"max_retain_drop": -0.1},
        {"max_parity": float("inf")},
        {"min_relearn_steps": 2.5},
        {"min_zrf": True},
        {"max_parity": "none"},
        {"allow_unevaluated_classes": "yes"},
    ):
        with pytest.raises(PolicyConfigError):
            Policy.from_mapping(bad)


def test_policy_from_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "lethe.toml"
    cfg.write_text('[other]\nx = 1\n\n[policy]\nmax_forget_accuracy = 0.0\nmax_parity = "off"\n')
    assert Policy.from_toml(cfg) == Policy(max_forget_accuracy=0.0, max_parity=None)
    (tmp_path / "empty.toml").write_text("[other]\n")
    assert Policy.from_toml(tmp_path / "empty.toml") == Policy()
    (tmp_path / "bad.toml").write_text("[policy]\nmax_retain_drop = 2\n")
    with pytest.raises(PolicyConfigError, match=r"max_retain_drop must be a number in \[0, 1\]"):
        Policy.from_toml(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("[policy\n")
    with pytest.raises(PolicyConfigError, match="not valid TOML"):
        Policy.from_toml(tmp_path / "broken.toml")


@click.command()
@policy_options
def _show(policy: Policy) -> None:
    click.echo(json.dumps(policy.to_dict(), sort_keys=True))


def test_policy_click_options(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(_show, [])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == Policy().to_dict()
    cfg = tmp_path / "p.toml"
    cfg.write_text("[policy]\nmax_forget_accuracy = 0.05\nmin_zrf = 0.4\n")
    out = runner.invoke(
        _show,
        [
            "--policy-file",
            str(cfg),
            "--min-zrf",
            "off",
            "--max-parity",
            "1e-3",
            "--min-relearn-steps",
            "4",
            "--allow-unevaluated-classes",
        ],
    )
    assert out.exit_code == 0, out.output
    assert (
        json.loads(out.output)
        == Policy(
            max_forget_accuracy=0.05,
            max_parity=1e-3,
            min_relearn_steps=4,
            allow_unevaluated_classes=True,
        ).to_dict()
    )
    bad = runner.invoke(_show, ["--max-forget-accuracy", "2"])
    assert bad.exit_code == 2 and "max_forget_accuracy must be a number in [0, 1]" in bad.output
    bad = runner.invoke(_show, ["--min-relearn-steps", "many"])
    assert bad.exit_code == 2 and "is not an integer or 'off'" in bad.output
    assert "--max-retain-drop" in runner.invoke(_show, ["--help"]).output

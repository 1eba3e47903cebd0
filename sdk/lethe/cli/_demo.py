"""``lethe demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lethe_audit.cli.common import json_option


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _print(result: dict[str, Any]) -> None:
    echo = click.echo
    echo("")
    echo(f"model {result['model']} ({result['arch']}), base accuracy {result['base_accuracy']:.3f}")
    echo(
        f"forgotten classes {result['forgotten_classes']} "
        f"for requests {', '.join(result['requests'])}"
    )
    echo("")
    rows = [
        ("forget accuracy", result["base_forget_accuracy"], result["forget_accuracy"]),
        ("retain accuracy", result["base_retain_accuracy"], result["retain_accuracy"]),
        ("MIA efficacy", result["base_mia_efficacy"], result["mia_efficacy"]),
        ("feature-probe AUC", result["base_probe_auc"], result["probe_auc"]),
        ("relearn steps", result["base_relearn_steps"], result["relearn_steps"]),
        ("ZRF", None, result["zrf"]),
        ("ONNX parity max|dlogit|", None, result["onnx_parity"]),
    ]
    echo(f"{'metric':26} {'before':>8} {'after':>8}")
    echo("-" * 44)
    for name, before, after in rows:
        a = f"{after:.2e}" if name.startswith("ONNX") and isinstance(after, float) else _fmt(after)
        echo(f"{name:26} {_fmt(before):>8} {a:>8}")
    before, after = result.get("per_class_before") or [], result.get("per_class_after") or []
    if before and after:
        echo("")
        echo("per-class accuracy  " + " ".join(f"{c:>5}" for c in range(len(after))))
        echo("  before            " + " ".join(f"{_fmt(v):>5}" for v in before))
        echo("  after             " + " ".join(f"{_fmt(v):>5}" for v in after))
    _print_erase(result)
    echo("")
    verdict = (
        "PASSED" if result["policy_passed"] else "FAILED: " + "; ".join(result["policy_reasons"])
    )
    if result["policy_passed"] and not result["erase_policy_passed"]:
        verdict += " (masked, not yet erased)"
    echo(f"policy (mask):     {verdict}")
    echo(f"policy (erase):    {'PASSED' if result['erase_policy_passed'] else 'FAILED'}")
    echo(
        f"ONNX model:        {result['onnx_path']} "
        f"(signature + receipt verified: {result['onnx_verified']})"
    )
    echo(f"receipt:           {result['receipt_path']} (verified: {result['receipt_verified']})")
    echo(f"audit log:         {result['log_size']} entries (verified: {result['log_verified']})")
    if result.get("report_path"):
        echo(f"auditor report:    {result['report_path']}")
    echo(f"verifier key:      {result['vkey']}")
    echo(f"project directory: {result['project_dir']}")
    echo(
        "check the receipt: lethe-audit receipt verify "
        f"{result['receipt_path']} --key {result['vkey']}"
    )


def _print_erase(result: dict[str, Any]) -> None:
    """Phase 2 beside the depth reference (a model retrained without one class)."""
    echo = click.echo
    echo("")
    echo(f"{'erase phase':26} {'erased':>8} {'reference':>10}")
    echo("-" * 46)
    rows = [
        ("forget accuracy", result["erase_forget_accuracy"], None),
        ("retain accuracy", result["erase_retain_accuracy"], None),
        ("relearn steps", result["erase_relearn_steps"], result["reference_relearn_steps"]),
        ("feature-probe AUC", result["erase_probe_auc"], result["reference_probe_auc"]),
        ("seconds", result["erase_seconds"], result["reference_retrain_seconds"]),
    ]
    for name, erased, ref in rows:
        echo(f"{name:26} {_fmt(erased):>8} {_fmt(ref):>10}")
    echo(
        f"relearn ratio {_fmt(result['relearn_ratio'])} (1.0 = as hard to relearn as the "
        f"reference; higher is deeper), probe AUC gap {_fmt(result['probe_auc_gap'])} "
        "(lower is better)"
    )
    if result.get("erase_onnx_path"):
        echo(f"erased ONNX model:  {result['erase_onnx_path']}")


@click.command()
@click.option(
    "--dir",
    "project_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the project here (default: a new temporary folder, printed at the end).",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for data split and training."
)
@click.option(
    "--base-epochs",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Epochs for the base classifier.",
)
@click.option(
    "--filter-epochs",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Epochs of the one filter-training round.",
)
@click.option(
    "--reference-epochs",
    type=click.IntRange(min=1),
    help="Epochs of the depth reference's retrain (default: --base-epochs).",
)
@click.option("--no-relearn", is_flag=True, help="Skip the relearn-time metric of the mask phase.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@json_option
def demo(
    project_dir: Path | None,
    seed: int,
    base_epochs: int,
    filter_epochs: int,
    reference_epochs: int | None,
    no_relearn: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run the whole story on the embedded defaults (digits, SQLite, local keys).

    Trains a small timm classifier on scikit-learn's digits, trains its filter bank, registers
    it, retrains the depth reference once, files two deletion requests from "an app", approves
    and applies them in both phases (mask, then erase), prints the before/after metrics, the
    erase phase beside the reference and the policy verdicts, exports and verifies the ONNX
    model, writes and verifies a receipt, and verifies the whole log.
    """
    from lethe._demo import DemoConfig, run_demo

    chatty = not quiet and not as_json
    result = run_demo(
        DemoConfig(
            project_dir=project_dir,
            seed=seed,
            base_epochs=base_epochs,
            filter_epochs=filter_epochs,
            reference_epochs=reference_epochs,
            relearn=not no_relearn,
            progress=chatty,
        ),
        log=(lambda msg: click.echo(msg, err=True)) if chatty else None,
    )
    if as_json:
        click.echo(json.dumps({"ok": True, **result}, indent=2, sort_keys=True))
    else:
        _print(result)

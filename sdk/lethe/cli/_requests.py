"""``lethe request``, ``lethe apply``, ``lethe export``, ``lethe log``, ``lethe receipt``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from lethe.cli._context import ProjectRef, exit_codes_in_help, out_option
from lethe.cli._models import device_option, feed_line, progress_lines
from lethe_audit.cli.common import emit, json_option
from lethe_audit.cli.metric_policy import policy_options
from lethe_audit.statements import Phase, RequestStatus  # the enums only (no signing code)


def _request_line(r: Any) -> str:
    flag = " OVERDUE" if r.overdue else ""
    depth = f" ({r.depth})" if r.depth else ""
    return (
        f"{r.id}  {r.status:10} model={r.model} classes={','.join(r.class_names)} "
        f"basis={r.legal_basis} due={r.due_at:%Y-%m-%d}{flag}{depth}"
    )


@click.group()
def request() -> None:
    """Deletion requests: file, list, show, approve, reject, shred."""


@request.command("file")
@click.option(
    "--subject",
    help="The data subject's identifier (never stored: only a keyed commitment). Visible in "
    "`ps` and shell history: prefer --subject-file.",
)
@click.option(
    "--subject-file",
    type=click.File("rb"),
    help="Read the identifier from this file ('-': stdin; one trailing newline is dropped).",
)
@click.option(
    "--class",
    "classes",
    required=True,
    multiple=True,
    help="Class name or id to forget (repeatable).",
)
@click.option(
    "--legal-basis", required=True, help="Code such as gdpr-17-1-b (see docs/workflow.md)."
)
@click.option("--model", help="Registered model (optional when only one is registered).")
@click.option("--idempotency-key", help="Same key -> same request, never a duplicate.")
@click.option(
    "--sample", "samples", multiple=True, help="A sample id (refused: Lethe forgets whole classes)."
)
@json_option
@click.pass_obj
def request_file(
    ref: ProjectRef,
    subject: str | None,
    subject_file: Any,
    classes: tuple[str, ...],
    legal_basis: str,
    model: str | None,
    idempotency_key: str | None,
    samples: tuple[str, ...],
    as_json: bool,
) -> None:
    """File a deletion request (what an app does through the SDK)."""
    r = ref.open().file(
        subject=_subject(subject, subject_file),
        classes=list(classes),
        legal_basis=legal_basis,
        model=model,
        idempotency_key=idempotency_key,
        samples=list(samples) or None,
    )
    emit(
        {"request": r.to_dict(include_subject_key=True)},
        as_json,
        f"filed {r.id} ({r.status}), due {r.due_at:%Y-%m-%d}",
    )


def _subject(subject: str | None, subject_file: Any) -> str:
    """The identifier from exactly one of --subject / --subject-file (at most 64 KiB)."""
    if (subject is None) == (subject_file is None):
        raise click.UsageError("give exactly one of --subject and --subject-file")
    if subject is not None:
        return subject
    raw = subject_file.read(65537)
    if len(raw) > 65536:
        raise click.BadParameter("the subject file is over 64 KiB", param_hint="--subject-file")
    try:
        text: str = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise click.BadParameter("the subject is not UTF-8", param_hint="--subject-file") from e
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


@request.command("list")
@click.option(
    "--status",
    multiple=True,
    type=click.Choice([s.value for s in RequestStatus]),
    help="Only these states (repeatable).",
)
@click.option("--overdue", is_flag=True, help="Only open requests past their due date.")
@click.option(
    "--model",
    help="Only the requests filed against this model (the deletions it inherits from a "
    "version it supersedes: lethe model pending NAME --all).",
)
@json_option
@click.pass_obj
def request_list(
    ref: ProjectRef, status: tuple[str, ...], overdue: bool, model: str | None, as_json: bool
) -> None:
    """List requests, oldest first."""
    rs = ref.reader().list(
        status=list(status) or None, overdue=True if overdue else None, model=model
    )
    emit(
        {"requests": [r.to_dict() for r in rs]},
        as_json,
        "\n".join(_request_line(r) for r in rs) or "no requests",
    )


@request.command("show")
@click.argument("request_id")
@json_option
@click.pass_obj
def request_show(ref: ProjectRef, request_id: str, as_json: bool) -> None:
    """Show one request."""
    r = ref.reader().get(request_id)
    d = r.to_dict()
    emit({"request": d}, as_json, "\n".join(f"{k:18} {v}" for k, v in d.items()))


def _decide(action: str) -> Any:
    @click.argument("request_id")
    @click.option(
        "--actor", required=True, help="Who decides (kept in the database, not in the log)."
    )
    @click.option("--reason", required=action == "reject", help="Why (required to reject).")
    @json_option
    @click.pass_obj
    def cmd(
        ref: ProjectRef, request_id: str, actor: str, reason: str | None, as_json: bool
    ) -> None:
        lt = ref.open()
        r = (
            lt.approve(request_id, actor=actor, reason=reason)
            if action == "approve"
            else lt.reject(request_id, actor=actor, reason=reason or "")
        )
        emit({"request": r.to_dict()}, as_json, f"{r.id} is {r.status}")

    cmd.__doc__ = {
        "approve": "Approve a received (or failed) request for the next apply.",
        "reject": "Reject a request that is not applied yet.",
    }[action]
    return cmd


request.command("approve")(_decide("approve"))
request.command("reject")(_decide("reject"))


@request.command("shred")
@click.argument("request_id")
@click.option("--actor", required=True, help="Who shreds (kept in the database).")
@json_option
@click.pass_obj
def request_shred(ref: ProjectRef, request_id: str, actor: str, as_json: bool) -> None:
    """Destroy the key of the subject commitment (crypto-shredding). Logged."""
    r = ref.open().shred(request_id, actor=actor)
    emit({"request": r.to_dict()}, as_json, f"{r.id}: subject link destroyed")


@click.command()
@exit_codes_in_help
@click.argument("name", required=False)
@click.option(
    "--phase",
    type=click.Choice(["both", "mask"]),
    default="both",
    show_default=True,
    help="both: mask then erase; mask: the fast path only (masked, not yet erased).",
)
@click.option("--no-relearn", is_flag=True, help="Skip the relearn-time metric of the mask phase.")
@click.option(
    "--quiet",
    is_flag=True,
    help="No progress bars, nor the lines printed instead when stderr is not a terminal.",
)
@device_option
@policy_options
@json_option
@click.pass_obj
def apply(
    ref: ProjectRef,
    name: str | None,
    phase: str,
    no_relearn: bool,
    quiet: bool,
    device: str | None,
    policy: Any,
    as_json: bool,
) -> None:
    """Apply every approved request of a model: mask (fold, verify, log, export, publish),
    then erase (re-train the weights, measure depth, publish again).

    Exits 0 when the model was published (or nothing waited), {PolicyError} when a
    policy failed (nothing published by that phase, the attempt logged), {MissingReferenceError}
    without a depth reference (checked first; make one with `lethe model reference`, or use
    --phase mask).
    """
    from lethe.errors import NothingToApplyError

    lt = ref.open()
    try:
        with progress_lines(not quiet):
            res = lt.apply(
                name,
                phase=phase,
                relearn=not no_relearn,
                progress=not quiet and not as_json,
                policy=_project_policy(lt.settings.policy),
                device=device,
            )
    except NothingToApplyError as e:
        emit({"applied": False, "message": str(e)}, as_json, str(e))
        return
    lines = _apply_lines(res)
    if res.erase is not None:
        lines += _apply_lines(res.erase)
    final = res.erase if res.erase is not None else res
    _emit_apply({"apply": res.to_dict()}, as_json, "\n".join(lines), final)


def _emit_apply(data: dict[str, Any], as_json: bool, text: str, final: Any) -> None:
    """A passed apply as a success; a failed policy as the failure it is: the text (or, with
    --json, ``{"ok": false, "error": ..., **data}``), one line on stderr, exit code of
    :class:`~lethe.errors.PolicyError`."""
    if final.passed:
        emit(data, as_json, text)
        return
    from lethe.cli._errors import report
    from lethe.errors import PolicyError
    from lethe_audit.cli.common import safe_text

    if not as_json:
        click.echo(safe_text(text))
    reasons = _reasons(final)
    why = "; ".join(map(str, reasons or [])) or "see the verdict"
    message = (
        f"the {final.phase} phase failed its policy ({why}): nothing was published by it, "
        "the attempt is logged"
    )
    hints = _hints(reasons)
    if hints:
        message += f". What usually helps: {'; '.join(hints)}"
    err = PolicyError(message, policy=f"{final.phase} policy", reasons=tuple(map(str, reasons)))
    sys.exit(report(err, as_json=as_json, data=data))


def _reasons(res: Any) -> list[Any]:
    """Why a phase failed its policy (the verdict's reasons)."""
    verdict = res.verdict
    reasons = verdict.get("reasons") if isinstance(verdict, dict) else verdict.reasons
    return list(reasons or [])


def _hints(reasons: list[Any]) -> list[str]:
    """The knob that usually helps, per failure reason (issue 16); apply already loaded torch."""
    from lethe.filters import knob_hints

    return knob_hints(reasons) if reasons else []


def _apply_lines(res: Any) -> list[str]:
    """What one phase did, in words (the erase phase with its depth against the reference)."""
    from lethe.workflow import MASKED_NOT_ERASED

    metrics = res.metrics if isinstance(res.metrics, dict) else res.metrics.to_dict()
    acc = metrics.get("accuracy") or {}
    lines = [
        f"{res.id} ({res.phase}): {res.outcome} classes={list(res.forgotten_classes)} "
        f"log index {res.log_index}",
        f"  forget acc {acc.get('forget_accuracy')}, retain acc {acc.get('retain_accuracy')} "
        f"(base {acc.get('base_retain_accuracy')})",
    ]
    depth = metrics.get("depth") or {}
    if res.phase == Phase.ERASE and depth:
        lines.append(
            f"  relearn ratio {depth.get('relearn_ratio')} (reference = 1.0, higher is deeper), "
            f"probe AUC gap {depth.get('probe_auc_gap')} (lower is better)"
        )
    if not res.passed:
        lines += [f"  policy failed: {r}" for r in _reasons(res)]
        lines += [f"  what usually helps: {h}" for h in _hints(_reasons(res))]
        if res.phase == Phase.ERASE:
            lines.append(f"  nothing published: the mask phase stays ({MASKED_NOT_ERASED})")
    elif res.phase == Phase.MASK and res.erase is None:
        lines.append(f"  published {res.onnx_path} ({MASKED_NOT_ERASED}: run `lethe erase`)")
    else:
        erased = " (erased)" if res.phase == Phase.ERASE else ""
        lines.append(f"  published {res.onnx_path}{erased}")
    return lines


@click.command()
@exit_codes_in_help
@click.option("--model", "name", help="Registered model (optional when only one is registered).")
@click.option(
    "--quiet",
    is_flag=True,
    help="No progress bars, nor the lines printed instead when stderr is not a terminal.",
)
@device_option
@policy_options
@json_option
@click.pass_obj
def erase(
    ref: ProjectRef, name: str | None, quiet: bool, device: str | None, policy: Any, as_json: bool
) -> None:
    """Phase 2 of the published deletion: erase the masked classes from the weights.

    Re-trains the published (masked) model, measures depth against the model's reference and
    publishes it as a new apply of the same requests. Exits 0 when erased (or already erased,
    or nothing is published), {PolicyError} when the policy failed (the masked model
    stays published), {MissingReferenceError} without a depth reference.
    """
    from lethe.errors import NothingToApplyError

    lt = ref.open()
    try:
        with progress_lines(not quiet):
            res = lt.erase(
                name,
                progress=not quiet and not as_json,
                policy=_project_policy(lt.settings.policy),
                device=device,
            )
    except NothingToApplyError as e:  # AlreadyErasedError included: a no-op that says so
        emit({"erased": False, "message": str(e)}, as_json, str(e))
        return
    data = {"erased": res.passed, "apply": res.to_dict()}
    _emit_apply(data, as_json, "\n".join(_apply_lines(res)), res)


def _project_policy(settings_policy: Mapping[str, Any]) -> Any:
    """The project's ``[policy]`` table, then ``--policy-file``, then thresholds given on the
    command line (or environment): each layer overrides the one before."""
    from lethe_audit.metrics import Policy

    ctx = click.get_current_context()
    src = click.core.ParameterSource
    policy = Policy.from_mapping(settings_policy)
    if ctx.params.get("policy_file"):  # a typed PolicyConfigError for a bad file, no tomllib here
        policy = Policy.from_toml(ctx.params["policy_file"], base=policy)
    given = {
        k: v
        for k, v in ctx.params.items()
        if k in Policy.keys()  # noqa: SIM118 - a classmethod, not a dict
        and v is not None
        and ctx.get_parameter_source(k) in (src.COMMANDLINE, src.ENVIRONMENT)
    }
    return Policy.from_mapping(given, base=policy) if given else policy


@click.group()
def export() -> None:
    """Export the published model."""


@export.command("onnx")
@click.argument("name", required=False)
@out_option("Where to write the ONNX file.")
@click.option(
    "--quantize", type=click.Choice(["int8"]), help="Static QDQ int8, calibrated on retain data."
)
@json_option
@click.pass_obj
def export_onnx(
    ref: ProjectRef, name: str | None, out: Path, quantize: str | None, as_json: bool
) -> None:
    """Write the published, signed ONNX model (optionally int8-quantized and re-verified)."""
    with progress_lines(True):
        lt = ref.open()
        res = lt.export_onnx(name, out, quantize=quantize, progress=True).to_dict()
    res["feed"] = feed_line(lt.model(name).spec)
    text = f"wrote {res['path']} (sha256 {res['sha256'][:16]}...)\nfeed: {res['feed']}"
    if res.get("openssf_signature"):
        text += f"\nwrote {res['openssf_signature']} (OpenSSF Model Signing signature)"
    if res.get("attestation_index") is not None:
        text += f"\nlogged its variant attestation as entry {res['attestation_index']}"
    emit(res, as_json, text)


@export.command("eval-data")
@click.argument("name", required=False)
@out_option("The .npz to write.")
@json_option
@click.pass_obj
def export_eval_data(ref: ProjectRef, name: str | None, out: Path, as_json: bool) -> None:
    """Write the evaluation set for auditors (.npz: preprocessed float32 x, int y)."""
    res = ref.open().export_eval_data(name, out).to_dict()
    emit(
        res,
        as_json,
        f"wrote {res['path']} ({res['samples']} samples, digest {res['dataset_digest'][:16]}...)",
    )


@click.group()
def log() -> None:
    """The signed audit log."""


@log.command("show")
@click.option(
    "--start", type=click.IntRange(min=0), default=0, show_default=True, help="First entry."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Entries to show."
)
@json_option
@click.pass_obj
def log_show(ref: ProjectRef, start: int, limit: int, as_json: bool) -> None:
    """List log entries (predicate type, event or outcome, request ids)."""
    rows = [e.to_dict() for e in ref.open().log_entries(start=start, limit=limit)]
    text = "\n".join(f"{r['index']:6}  {r['kind']:28} {r['summary']}" for r in rows) or "empty log"
    emit({"entries": rows}, as_json, text)


@log.command("checkpoint")
@json_option
@click.pass_obj
def log_checkpoint(ref: ProjectRef, as_json: bool) -> None:
    """Print the latest signed checkpoint (a C2SP signed note)."""
    lt = ref.open()
    cp = lt.log.checkpoint()
    emit({"checkpoint": cp, "size": lt.log.size()}, as_json, cp.rstrip("\n"))


@log.command("verify")
@json_option
@click.pass_obj
def log_verify(ref: ProjectRef, as_json: bool) -> None:
    """Verify the whole log offline (signatures, root, checkpoints, statements)."""
    lt = ref.open()
    lt.verify_log()
    size = lt.log.size()
    emit({"verified": True, "size": size}, as_json, f"log verified: {size} entries")


@log.command("export")
@out_option("The bundle to write: a .zip file, or a new directory for any other name.")
@click.option(
    "--no-figures", is_flag=True, help="Leave out the filter-bank figures of the applies."
)
@json_option
@click.pass_obj
def log_export(ref: ProjectRef, out: Path, no_figures: bool, as_json: bool) -> None:
    """Write the auditor bundle: every entry, the checkpoints, the keys and the filter figures."""
    lt = ref.open()
    path = lt.export_bundle(out, figures=not no_figures)
    size = lt.log.size()
    emit(
        {"path": str(path), "size": size, "figures": not no_figures},
        as_json,
        f"wrote {path} ({size} entries); the auditor checks it with "
        f"`lethe-audit verify {path} --key VKEY` and `lethe-audit report {path} --key VKEY`",
    )


@click.command()
@click.argument("request_id")
@out_option("Receipt file to write.")
@json_option
@click.pass_obj
def receipt(ref: ProjectRef, request_id: str, out: Path, as_json: bool) -> None:
    """Write a request's receipt (C2SP tlog-proof with the signed attestation)."""
    from lethe._io import atomic_write_bytes

    text = ref.open().receipt(request_id)
    atomic_write_bytes(out, text.encode("utf-8"))
    emit(
        {"path": str(out), "request_id": request_id},
        as_json,
        f"wrote {out}; check it with `lethe-audit receipt verify {out} --key VKEY`",
    )

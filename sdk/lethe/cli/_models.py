"""``lethe model`` and ``lethe filters``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from lethe.cli._context import ProjectRef, exit_codes_in_help, out_option
from lethe.workflow import ReferenceConfig  # torch-free: the help states its defaults
from lethe_audit.cli.common import emit, json_option

#: ``--device`` for the commands that run the model (validated by lethe.models.resolve_device).
device_option = click.option(
    "--device", help="Where to run the model: cpu, cuda or cuda:N (default: CUDA when present)."
)


@contextmanager
def progress_lines(enabled: bool) -> Iterator[None]:
    """While a long command runs: the ``lethe`` loggers' WARNING records as ``lethe: warning:``
    lines on stderr (always), and, when ``enabled`` and stderr is not a terminal (a CI log, a
    pipe), their INFO lines too: one per step or epoch, with the numbers the bars show."""
    import sys

    logger = logging.getLogger("lethe")
    handlers: list[logging.Handler] = [_WarningLines()]
    if enabled and not sys.stderr.isatty():
        info = logging.StreamHandler(sys.stderr)
        info.setFormatter(_EscapedLines())
        info.addFilter(lambda record: record.levelno < logging.WARNING)
        handlers.append(info)
    level = logger.level
    for h in handlers:
        logger.addHandler(h)
    if len(handlers) > 1:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
        logger.setLevel(level)


class _EscapedLines(logging.Formatter):
    """An INFO record as one line, control characters escaped (messages can quote a file's
    own text: a checkpoint's ``arch``, a file name)."""

    def format(self, record: logging.LogRecord) -> str:
        from lethe_audit.cli.common import safe_text

        return safe_text(record.getMessage(), one_line=True)


class _WarningLines(logging.Handler):
    """A library warning as one escaped ``lethe: warning: ...`` line on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        from lethe_audit.cli.common import safe_text

        click.echo(f"lethe: warning: {safe_text(record.getMessage(), one_line=True)}", err=True)


@click.group()
def model() -> None:
    """Registered models (the deployed classifiers Lethe filters)."""


@model.command("register")
@click.argument("name")
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Weights: a Lethe checkpoint, or a safetensors / torch.save state dict with --arch.",
)
@click.option(
    "--eval-data",
    required=True,
    help="Held-out data: a .npz, an ImageFolder dir, or a dataset name.",
)
@click.option("--train-data", help="Training data (for filter training, MIA and relearn metrics).")
@click.option(
    "--class-names", help="Comma-separated class names in the head's order (default: the data's)."
)
@click.option("--arch", help="timm architecture, for a plain state dict.")
@click.option("--num-classes", type=click.IntRange(min=2), help="Number of classes (with --arch).")
@click.option(
    "--in-chans",
    type=click.Choice(["1", "3"]),
    default="3",
    show_default=True,
    help="Input channels (with --arch).",
)
@click.option("--input-size", help="Input size HxW, e.g. 32x32 (with --arch).")
@click.option("--small-stem", is_flag=True, help="ResNet stem for small images (with --arch).")
@click.option(
    "--timm-kwargs", help="Extra timm.create_model options as JSON, e.g. '{\"drop_rate\": 0.1}'."
)
@click.option("--mean", help="Normalisation mean the model was trained with, R,G,B (or one value).")
@click.option("--std", help="Normalisation std the model was trained with, R,G,B (or one value).")
@click.option(
    "--interpolation",
    type=click.Choice(["bilinear", "bicubic", "nearest"]),
    help="Resize interpolation (default bilinear).",
)
@click.option(
    "--crop-pct",
    type=click.FloatRange(min=0.0, max=1.0, min_open=True),
    help="Centre-crop fraction: resize to size/crop_pct, crop to size (default 1.0: no crop).",
)
@click.option(
    "--input-range",
    help="Value range pixels are scaled to before normalising, LOW,HIGH (default 0,1).",
)
@click.option(
    "--timm-preprocessing",
    is_flag=True,
    help="Take mean/std/interpolation/crop from timm's pretrained config of --arch "
    "(only for weights fine-tuned from timm's pretrained ones); --mean/--std/"
    "--interpolation/--crop-pct/--input-range given too override those values.",
)
@click.option(
    "--ema/--no-ema",
    default=None,
    help="A training checkpoint with raw and EMA weights (timm's state_dict / "
    "state_dict_ema): use the EMA (default, as timm does) or the raw weights.",
)
@click.option(
    "--expect-accuracy",
    type=click.FloatRange(0.0, 1.0),
    help="Refuse unless the measured base accuracy is at least this minus 0.05.",
)
@click.option(
    "--force", is_flag=True, help="Register even if the measured accuracy is near chance."
)
@device_option
@click.option(
    "--bank",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Attach this filter bank too.",
)
@click.option(
    "--no-onnx", is_flag=True, help="Skip the base ONNX export (done at registration by default)."
)
@click.option(
    "--supersedes",
    metavar="OLD",
    help="NAME is a newer version of model OLD: it inherits OLD's deletions (pending until "
    "applied to NAME or attested absent) and keeps OLD's class order.",
)
@json_option
@click.pass_obj
def model_register(
    ref: ProjectRef,
    name: str,
    checkpoint: Path,
    eval_data: str,
    train_data: str | None,
    class_names: str | None,
    arch: str | None,
    num_classes: int | None,
    in_chans: str,
    input_size: str | None,
    small_stem: bool,
    timm_kwargs: str | None,
    mean: str | None,
    std: str | None,
    interpolation: str | None,
    crop_pct: float | None,
    input_range: str | None,
    timm_preprocessing: bool,
    ema: bool | None,
    expect_accuracy: float | None,
    force: bool,
    device: str | None,
    bank: Path | None,
    no_onnx: bool,
    supersedes: str | None,
    as_json: bool,
) -> None:
    """Register a deployed model NAME with its evaluation (and training) data.

    Registration measures before it trusts: it feeds the eval data through the model with its
    recorded preprocessing and refuses a near-chance accuracy unless --force.
    """
    spec: dict[str, Any] | None = None
    if arch is not None:
        if num_classes is None or input_size is None:
            raise click.UsageError("--arch needs --num-classes and --input-size")
        try:
            h, w = (int(v) for v in input_size.lower().split("x"))
        except ValueError:
            raise click.BadParameter("use HxW, e.g. 32x32", param_hint="--input-size") from None
        spec = {
            "arch": arch,
            "num_classes": num_classes,
            "in_chans": int(in_chans),
            "input_size": [h, w],
            "small_stem": small_stem,
            "kwargs": _json_object(timm_kwargs),
        }
    names = [c.strip() for c in class_names.split(",")] if class_names else None
    pre: dict[str, Any] = {
        "mean": _floats(mean, "--mean"),
        "std": _floats(std, "--std"),
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "input_range": _floats(input_range, "--input-range", n=2),
    }
    lt = ref.open()
    info = lt.register_model(
        name,
        checkpoint,
        eval_data=eval_data,
        train_data=train_data,
        class_names=names,
        spec=spec,
        bank=bank,
        export_onnx=not no_onnx,
        preprocessing={**pre, "timm": True} if timm_preprocessing else pre,
        expect_accuracy=expect_accuracy,
        force=force,
        device=device,
        caller="cli",
        log=_say,  # stderr: --json output on stdout stays one document
        supersedes=supersedes,
        ema=ema,
    )
    _registered(lt, info, as_json)


def _registered(lt: Any, info: Any, as_json: bool) -> None:
    """What ``model register`` prints: the measured accuracy, what a successor inherits."""
    acc = _base_accuracy(info.spec)
    text = f"registered {info.name} (digest {info.base_digest[:16]}...), base accuracy " + (
        f"{acc:.4f}" if acc is not None else "not measured"
    )
    data: dict[str, Any] = {"model": info.to_dict(), "base_accuracy": acc}
    if info.supersedes is not None:
        inherited = lt.inherited(info.name)
        data["inherited"] = [d.to_dict() for d in inherited]
        text += (
            f"\nsupersedes {info.supersedes}: {len(inherited)} deletion(s) inherited, pending "
            f"until applied (`lethe apply {info.name}`; see `lethe model pending {info.name}`)"
        )
    emit(data, as_json, text)


def _json_object(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON ({exc})", param_hint="--timm-kwargs") from None
    if not isinstance(value, dict):
        raise click.BadParameter("give a JSON object", param_hint="--timm-kwargs")
    return value


def _say(msg: str) -> None:
    from lethe_audit.cli.common import safe_text

    click.echo(safe_text(msg, one_line=True), err=True)  # it may quote the checkpoint's text


def _floats(text: str | None, flag: str, *, n: int | None = None) -> tuple[float, ...] | None:
    """``R,G,B`` (or one value) as floats; ``None`` when the option was not given."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(
            "use comma-separated numbers, e.g. 0.485,0.456,0.406", param_hint=flag
        ) from None
    if n is not None and len(values) != n:
        raise click.BadParameter(f"give {n} comma-separated numbers", param_hint=flag)
    return values


@model.command("list")
@json_option
@click.pass_obj
def model_list(ref: ProjectRef, as_json: bool) -> None:
    """List registered models."""
    infos = ref.open().models()
    text = (
        "\n".join(
            f"{m.name:20} {m.spec['arch']:24} classes={len(m.class_names):<4} "
            f"bank={'yes' if m.bank_digest else 'no ':3} published={m.current_apply_id or '-'}"
            for m in infos
        )
        or "no models registered"
    )
    emit({"models": [m.to_dict() for m in infos]}, as_json, text)


@model.command("show")
@click.argument("name", required=False)
@json_option
@click.pass_obj
def model_show(ref: ProjectRef, name: str | None, as_json: bool) -> None:
    """Show one model: spec, classes, digests, what is published."""
    lt = ref.open()
    info = lt.model(name)
    published = lt.published(info.name)
    reference = lt.reference(info.name)
    depth = _published_depth(lt, info.name, info.current_apply_id)
    data = {
        "model": info.to_dict(),
        "published": {k: str(v) for k, v in published.items()} if published else None,
        "published_depth": depth,
        "reference": reference.to_dict() if reference is not None else None,
    }
    lines = [
        f"name:        {info.name}",
        f"arch:        {info.spec['arch']} in={info.spec['in_chans']}x{info.spec['input_size']}",
        f"feed:        {feed_line(info.spec)}",
        "base acc:    " + _accuracy_text(_base_accuracy(info.spec)),
        f"digest:      {info.base_digest}",
        f"supersedes:  {info.supersedes or '-'}",
        f"bank:        {info.bank_digest or '-'}",
        f"base onnx:   {info.base_onnx_sha256 or '-'}",
        f"published:   {info.current_apply_id or '- (unfiltered)'}"
        + (f" ({depth})" if depth else ""),
        "reference:   "
        + (
            f"{reference.id} (class {list(reference.info.classes)}, relearn steps "
            f"{reference.info.relearn_steps})"
            if reference is not None
            else f"- (make one: lethe model reference {info.name})"
        ),
        "classes:     " + ", ".join(f"{i}={n}" for i, n in enumerate(info.class_names)),
    ]
    emit(data, as_json, "\n".join(lines))


@model.command("pending")
@exit_codes_in_help
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also the inherited deletions covered.")
@json_option
@click.pass_obj
def model_pending(ref: ProjectRef, name: str | None, show_all: bool, as_json: bool) -> None:
    """The deletions NAME inherits from the models it supersedes that are still pending.

    A model with a pending inherited deletion is not published: `lethe erase`, `lethe export
    onnx` and `lethe model rollback` exit {InheritedDeletionsPendingError}; `lethe apply NAME`
    includes them.
    """
    items = ref.open().inherited(name)
    shown = items if show_all else [d for d in items if d.status == "pending"]
    lines = [
        f"{d.request_id}  from {d.from_model}  classes {', '.join(d.class_names)}  {d.status}"
        + (f" ({d.apply_id})" if d.apply_id else "")
        for d in shown
    ]
    pending = sum(d.status == "pending" for d in items)
    lines.append(f"{pending} pending of {len(items)} inherited")
    emit({"inherited": [d.to_dict() for d in shown], "pending": pending}, as_json, "\n".join(lines))


@model.command("attest-without")
@exit_codes_in_help
@click.argument("name")
@click.option("--classes", required=True, help="Comma-separated class names or ids.")
@click.option("--reason", required=True, help="Why NAME lacks them (one line, logged).")
@device_option
@json_option
@click.pass_obj
def model_attest_without(
    ref: ProjectRef, name: str, classes: str, reason: str, device: str | None, as_json: bool
) -> None:
    """Attest that NAME was trained without CLASSES of its pending inherited deletions.

    Lethe measures it first: NAME's forget accuracy on those classes (its eval data) must meet
    the policy's max_forget_accuracy, else it exits {TrainedWithoutRefusedError} and nothing
    is logged. Accepted, the attestation and the measured numbers are logged
    (`model.attested_without`) and the deletions are covered for NAME.
    """
    wanted = [c.strip() for c in classes.split(",") if c.strip()]
    res = ref.open().attest_trained_without(name, wanted, reason=reason, device=device)
    text = (
        f"{res.model}: trained without classes {list(res.classes)} accepted (forget accuracy "
        f"{res.forget_accuracy:.4f} <= {res.threshold}); covers {', '.join(res.request_ids)}; "
        f"logged at index {res.log_index}"
    )
    emit({"attested": res.to_dict()}, as_json, text)


@model.command("rollback")
@exit_codes_in_help
@click.option("--to", "apply_id", required=True, help="The earlier apply to publish again.")
@json_option
@click.pass_obj
def model_rollback(ref: ProjectRef, apply_id: str, as_json: bool) -> None:
    """Republish an earlier successful apply of the same model (a bad apply rolled back).

    Only to an apply that forgets at least the classes published now, else it exits
    {RollbackError}; logged (`apply.rolled_back`).
    """
    res = ref.open().rollback(apply_id)
    emit(
        {"apply": res.to_dict()},
        as_json,
        f"{res.model}: published {res.id} again (forgets {list(res.forgotten_classes)}), "
        f"{res.onnx_path}",
    )


_REF = ReferenceConfig()
_OR_TABLE = "; the [reference] table of lethe.toml overrides it"


@model.command("reference")
@click.argument("name", required=False)
@click.option(
    "--class",
    "cls",
    help="Class name or id to hold out (default: the class with most training samples).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help=f"Training epochs (default {_REF.epochs}{_OR_TABLE}).",
)
@click.option("--lr", type=float, help=f"AdamW learning rate (default {_REF.lr}{_OR_TABLE}).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help=f"Batch size (default {_REF.batch_size}{_OR_TABLE}).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=3),
    help=f"Relearn repeats, one per seed (default {_REF.seeds}{_OR_TABLE}).",
)
@device_option
@click.option("--quiet", is_flag=True, help="No progress bars.")
@json_option
@click.pass_obj
def model_reference(
    ref: ProjectRef,
    name: str | None,
    cls: str | None,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    seeds: int | None,
    device: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Retrain the model once without one class: the depth reference erase is measured on."""
    recipe: dict[str, Any] = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seeds": seeds}
    with progress_lines(not quiet):  # non-tty stderr: a line per epoch and relearn step
        r = ref.open().train_reference(
            name,
            cls=cls,
            progress=not quiet and not as_json,
            device=device,
            config={k: v for k, v in recipe.items() if v is not None},
            caller="cli",
        )
    info = r.info
    lines = [
        f"reference {r.id} for {r.model}: retrained without class {list(info.classes)} "
        f"in {info.seconds:.1f} s ({r.reason})",
        f"relearn steps {info.relearn_steps} (per seed {list(info.relearn_runs)}), "
        f"probe AUC {info.probe_auc}",
        f"stored {r.checkpoint_path}, logged at index {r.log_index}",
    ]
    emit({"reference": r.to_dict()}, as_json, "\n".join(lines))


def _base_accuracy(spec: dict[str, Any]) -> float | None:
    """The accuracy registration measured (kept beside the spec; None for older models)."""
    reg = spec.get("registration")
    value = reg.get("base_accuracy") if isinstance(reg, dict) else None
    return float(value) if value is not None else None


def _accuracy_text(acc: float | None) -> str:
    return f"{acc:.4f} (measured at registration)" if acc is not None else "-"


def feed_line(spec: dict[str, Any]) -> str:
    """How the model is fed (its recorded preprocessing), step by step in one line (the
    formatter ``lethe-audit model verify`` uses too)."""
    from lethe.errors import LetheError
    from lethe.models import ModelSpec

    known = {k: v for k, v in spec.items() if k != "registration"}
    try:
        return ModelSpec.from_dict(known).preprocess.describe()
    except (LetheError, TypeError, ValueError):  # a foreign spec: show it raw, don't fail
        return json.dumps(known, sort_keys=True)


def _published_depth(lt: Any, name: str, apply_id: str | None) -> str | None:
    if apply_id is None:
        return None
    res = next((a for a in lt.applies(name) if a.id == apply_id), None)
    return res.depth if res is not None else None


@click.group()
def filters() -> None:
    """The filter bank of a model: train it, inspect it, explain it."""


@filters.command("train")
@click.argument("name", required=False)
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs (default 8).")
@click.option("--lr", type=float, help="Adam learning rate on the filter logits (default 0.3).")
@click.option("--batch-size", type=click.IntRange(min=2), help="Batch size (default 128).")
@click.option(
    "--max-set-size", type=click.IntRange(min=1), help="Classes per random forget set (default 5)."
)
@click.option("--seed", type=int, help="Seed (default 0).")
@click.option(
    "--forget-loss",
    type=click.Choice(["capped-mean", "per-sample-inverse", "margin"]),
    help="Forget term of the loss (default capped-mean; margin helps weak plain CNNs).",
)
@click.option(
    "--set-size-power",
    type=float,
    help="Draw forget-set sizes k with weight k**P (default 0.0: uniform).",
)
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar or progress lines.")
@json_option
@click.pass_obj
def filters_train(
    ref: ProjectRef,
    name: str | None,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    max_set_size: int | None,
    seed: int | None,
    forget_loss: str | None,
    set_size_power: float | None,
    device: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train the filters of every class in one round and attach the bank (resumable).

    Prints one line per epoch when stderr is not a terminal (a bar otherwise), then what the
    filters reach class by class on the eval data (forgetting that class alone).
    """
    import sys

    config: dict[str, Any] = {
        k: v
        for k, v in {
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "max_set_size": max_set_size,
            "seed": seed,
            "forget_loss": forget_loss,
            "set_size_power": set_size_power,
        }.items()
        if v is not None
    }
    lt = ref.open()
    stats: list[dict[str, float]] = []
    lines = not quiet and not sys.stderr.isatty()
    total = epochs or 8

    def on_epoch(e: int, s: dict[str, float]) -> None:
        stats.append(s)
        if lines:
            click.echo(
                f"filters epoch {e + 1}/{total}: loss {s['loss']:.3f}, forget acc "
                f"{s['forget_acc']:.3f}, retain acc {s['retain_acc']:.3f}",
                err=True,
            )

    bank = lt.train_filters(
        name,
        progress=not quiet and not as_json,
        on_epoch=on_epoch,
        device=device,
        config=config,
        caller="cli",
    )
    report = _class_report(lt, name, bank, device)
    data = {"bank_digest": bank.digest, "layers": len(bank.targets), "epochs": stats}
    data["classes"] = report
    emit(data, as_json, _train_text(bank, stats, report))


def _class_report(lt: Any, name: str | None, bank: Any, device: str | None) -> list[dict[str, Any]]:
    from lethe.data import to_dataset
    from lethe.filters import class_report
    from lethe.models import resolve_device

    model, spec = lt.load_model(name)
    model.to(resolve_device(device))
    return list(class_report(model, bank, to_dataset(lt.data(name, split="eval"), spec.preprocess)))


def _train_text(bank: Any, stats: list[dict[str, float]], report: list[dict[str, Any]]) -> str:
    last = stats[-1] if stats else {}
    lines = [
        f"trained bank {bank.digest[:16]}... ({len(bank.targets)} layers); "
        f"last epoch forget acc {last.get('forget_acc', float('nan')):.3f}, "
        f"retain acc {last.get('retain_acc', float('nan')):.3f}",
        "on the eval data, forgetting one class at a time (forget acc -> 0, retain acc -> base):",
    ]
    for r in report:
        f, k = r["forget_acc"], r["retain_acc"]
        lines.append(
            f"  {r['class']:>16}: forget acc {'-' if f is None else f'{f:.3f}'}, "
            f"retain acc {'-' if k is None else f'{k:.3f}'}"
        )
    return "\n".join(lines)


@filters.command("show")
@click.argument("name", required=False)
@json_option
@click.pass_obj
def filters_show(ref: ProjectRef, name: str | None, as_json: bool) -> None:
    """Show the attached bank: manifest and the share of channels each class switches off."""
    from lethe.filters import suppression_by_layer

    bank = ref.open().load_bank(name)
    sup = suppression_by_layer(bank)
    per_class = {
        bank.class_names[c]: round(float(sup[c].mean()), 4) for c in range(bank.num_classes)
    }
    manifest = bank.manifest
    data = {"manifest": manifest, "suppressed_share_by_class": per_class}
    lines = [
        f"bank {bank.digest}",
        f"layers {len(bank.targets)}, classes {bank.num_classes}",
        f"trained with {json.dumps(bank.train_config, sort_keys=True)}",
        "share of channels suppressed (alpha < 0.5), mean over layers:",
    ]
    lines += [f"  {k}: {v:.3f}" for k, v in per_class.items()]
    emit(data, as_json, "\n".join(lines))


@filters.command("explain")
@click.argument("name", required=False)
@out_option("Folder for the PNG figures.", folder=True)
@click.option("--classes", help="Comma-separated class names or ids (default: all).")
@json_option
@click.pass_obj
def filters_explain(
    ref: ProjectRef, name: str | None, out_dir: Path, classes: str | None, as_json: bool
) -> None:
    """Write PNG heatmaps of alpha per layer, a class x layer summary and the class overlap."""
    from lethe.filters import explain

    bank = ref.open().load_bank(name)
    ids = list(bank.class_ids([c.strip() for c in classes.split(",")])) if classes else None
    res = explain(bank, out_dir, classes=ids)
    files = [str(p) for p in (*res.layer_figures.values(), res.summary_figure, res.overlap_figure)]
    emit({"files": files}, as_json, f"wrote {len(files)} figures to {out_dir}")

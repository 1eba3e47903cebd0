"""Issue 16's own scenario as a benchmark: a model trained *outside* Lethe, brought to it.

A timm ResNet-18 (``num_classes=6``, 3 input channels from grayscale) is trained with plain
PyTorch on a 6-class Fashion-MNIST ImageFolder (PNG files in class folders, with a
``.ipynb_checkpoints`` folder beside them that must not become a class), normalised with the
ImageNet mean/std, and saved as a plain ``torch.save(state_dict)`` and as safetensors. Then,
as a user would, through the ``lethe`` command line (one process per command):

1. ``lethe init``; ``lethe model register`` without preprocessing options (refused: exit 171),
   with the wrong 0.5 / 0.5 (refused near chance: exit 172; its accuracy measured with
   ``--force --no-onnx`` under another name), with ``--mean/--std`` ImageNet from both files
   (``base_accuracy`` against the benchmark's own PyTorch evaluation);
2. ``lethe filters train``, file + approve a request forgetting one class, ``lethe apply
   --phase mask``; when its policy fails, what the message says (``lethe filters train
   --epochs 16``), approve again and apply again; preset ``erase``: then ``lethe model
   reference`` + ``lethe erase``;
3. ``lethe export onnx``, then the exported model evaluated the way a serving path would:
   PNG files -> the feed its ``lethe.preprocessing`` metadata describes (numpy and PIL only,
   no Lethe) -> onnxruntime -> argmax, on the retain and the forget eval images.

    ./dev python -m benchmarks.bench_byo --preset erase     # ~7 min on one core
    ./dev python -m benchmarks.bench_byo                    # preset full: mask only
    ./dev python -m benchmarks.bench_byo --preset tiny --out /tmp/byo.json

Results go to ``benchmarks/results/byo.json`` (``--out``). The numbers are in
docs/benchmarks.md, "Bring your own model".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._common import RESULTS_DIR, machine

RESULTS = RESULTS_DIR / "byo.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODEL = "shop"
#: Fashion-MNIST class ids used, and their folder names (ImageFolder classes are the sorted
#: folder names, so this is also the head's order: ankle_boot, bag, dress, sandal, trouser, tshirt).
CLASSES = {9: "ankle_boot", 8: "bag", 3: "dress", 5: "sandal", 1: "trouser", 0: "tshirt"}


@dataclass(frozen=True)
class Preset:
    train_per_class: int
    test_per_class: int
    size: int  # PNG files and model input: size x size
    epochs: int  # the outside training
    filter_epochs: int
    forget: str  # the class forgotten (a folder name)
    erase: bool = False
    #: After a failed apply policy: `lethe filters train --epochs N` (what its message says).
    retry_epochs: int = 16
    #: `lethe model register` / `lethe apply` extras (the tiny preset's 1-epoch model is weak).
    register_extra: tuple[str, ...] = ()
    apply_extra: tuple[str, ...] = ()
    #: The depth reference's recipe: as many epochs as the outside training.
    reference_extra: tuple[str, ...] = ("--epochs", "6", "--seeds", "3")
    seed: int = 0


_LENIENT = ("--max-forget-accuracy", "off", "--max-retain-drop", "off", "--min-zrf", "off")
PRESETS = {
    "full": Preset(300, 100, 32, 6, 6, "sandal"),
    "erase": Preset(300, 100, 32, 6, 6, "sandal", erase=True),
    "tiny": Preset(
        6, 3, 16, 1, 1, "sandal", register_extra=("--force",),
        apply_extra=(*_LENIENT, "--no-relearn"),
    ),
}  # fmt: skip


# ---------------------------------------------------------------- data, as the user has it


def write_image_folder(root: Path, preset: Preset) -> dict[str, int]:
    """Fashion-MNIST's seeded per-class subsample as ``root/{train,test}/<class>/*.png`` at
    ``preset.size``, plus a ``.ipynb_checkpoints`` folder in each split; the images per split."""
    from PIL import Image

    from lethe.data import load_fashion_mnist

    rng = np.random.default_rng(preset.seed)
    counts = {}
    for split, n in (("train", preset.train_per_class), ("test", preset.test_per_class)):
        data = load_fashion_mnist(split=split)
        for cid, name in CLASSES.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            idx = rng.choice(np.flatnonzero(data.y == cid), size=n, replace=False)
            for i in idx:
                im = Image.fromarray(data.x[i, :, :, 0], mode="L")
                im.resize((preset.size, preset.size), Image.Resampling.BILINEAR).save(
                    folder / f"{int(i):05d}.png"
                )
        hidden = root / split / ".ipynb_checkpoints"
        hidden.mkdir()
        Image.new("L", (preset.size, preset.size)).save(hidden / "untitled-checkpoint.png")
        counts[split] = n * len(CLASSES)
    return counts


def read_folder(root: Path) -> tuple[list[str], list[Path], npt.NDArray[np.int64]]:
    """What a user's own loader does: sorted class folders, dot-folders skipped."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).glob("*.png"))]
    return classes, [f for f, _ in files], np.asarray([c for _, c in files], dtype=np.int64)


def _pixels(files: list[Path]) -> npt.NDArray[np.uint8]:
    from PIL import Image

    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
    return np.stack(out)


# ---------------------------------------------------------------- the outside training


def _normalised(x: npt.NDArray[np.uint8]) -> Any:
    import torch

    t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    return (t - mean) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def train_outside(root: Path, preset: Preset, out: Path) -> dict[str, Any]:
    """Plain PyTorch, no Lethe (AdamW, one-cycle learning rate, batch 64, no augmentation):
    train, evaluate on the test folder, save both weight files."""
    import timm
    import torch
    from safetensors.torch import save_file

    classes, files, y = read_folder(root / "train")
    x = _normalised(_pixels(files))
    torch.manual_seed(preset.seed)
    model = timm.create_model("resnet18", num_classes=len(classes), in_chans=3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps = preset.epochs * -(-len(x) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    labels, t0 = torch.from_numpy(y), time.perf_counter()
    for _ in range(preset.epochs):
        model.train()
        for batch in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), labels[batch]).backward()
            opt.step()
            sched.step()
    train_s = time.perf_counter() - t0
    model.eval()
    _, test_files, test_y = read_folder(root / "test")
    with torch.no_grad():
        pred = model(_normalised(_pixels(test_files))).argmax(1).numpy()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(sd, out / "model.pt")
    save_file(sd, str(out / "model.safetensors"))
    forget = classes.index(preset.forget)
    keep = test_y != forget
    return {
        "classes": classes,
        "train_s": round(train_s, 1),
        "real_accuracy": float((pred == test_y).mean()),
        "real_retain_accuracy": float((pred[keep] == test_y[keep]).mean()),
        "real_forget_accuracy": float((pred[~keep] == test_y[~keep]).mean()),
    }


# ---------------------------------------------------------------- the lethe command line


def _lethe() -> str:
    exe = Path(sys.executable).with_name("lethe")
    return str(exe) if exe.exists() else "lethe"


def cli(project: Path, *args: str) -> dict[str, Any]:
    """One ``lethe ... --json`` process: exit code, parsed document, seconds, stderr's tail."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [_lethe(), "--project", str(project), *args, "--json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        doc = json.loads(res.stdout) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        doc = {"unparsed_stdout": res.stdout[-2000:]}
    return {
        "exit_code": res.returncode,
        "doc": doc,
        "seconds": round(time.perf_counter() - t0, 1),
        "stderr_tail": res.stderr[-1500:],
    }


def _error(r: dict[str, Any]) -> dict[str, Any]:
    err = r["doc"].get("error", {}) if isinstance(r["doc"], dict) else {}
    return {"exit_code": r["exit_code"], "type": err.get("type"), "message": err.get("message")}


def _register_args(name: str, ckpt: Path, root: Path, preset: Preset) -> list[str]:
    size = f"{preset.size}x{preset.size}"
    return [
        "model", "register", name, "--checkpoint", str(ckpt), "--eval-data", str(root / "test"),
        "--train-data", str(root / "train"), "--arch", "resnet18", "--num-classes",
        str(len(CLASSES)), "--in-chans", "3", "--input-size", size, "--device", "cpu",
    ]  # fmt: skip


def register_all(project: Path, root: Path, work: Path, preset: Preset) -> dict[str, Any]:
    """The refused registrations, the wrong one forced, and the right ones (.pt and
    safetensors); raises if the right one fails."""
    mean = ["--mean", ",".join(map(str, IMAGENET_MEAN)), "--std", ",".join(map(str, IMAGENET_STD))]
    pt, st = work / "model.pt", work / "model.safetensors"
    out: dict[str, Any] = {}
    r = cli(project, *_register_args(MODEL, pt, root, preset))
    out["no_preprocessing"] = _error(r)
    half = ["--mean", "0.5", "--std", "0.5"]
    out["mean_std_0.5"] = _error(cli(project, *_register_args(MODEL, pt, root, preset), *half))
    r = cli(project, *_register_args("wrong", pt, root, preset), *half, "--force", "--no-onnx")
    out["mean_std_0.5_forced"] = {"exit_code": r["exit_code"], **_accuracy(r)}
    r = cli(project, *_register_args(MODEL, pt, root, preset), *mean, *preset.register_extra)
    if r["exit_code"] != 0:
        raise RuntimeError(f"registration with ImageNet mean/std failed: {r}")
    out["imagenet_pt"] = {"seconds": r["seconds"], **_accuracy(r)}
    out["preprocessing"] = {
        k: r["doc"]["model"]["spec"].get(k)
        for k in ("input_size", "mean", "std", "interpolation", "crop_pct", "input_range")
    }
    r = cli(project, *_register_args("shop-st", st, root, preset), *mean, "--no-onnx",
            *preset.register_extra)  # fmt: skip
    out["imagenet_safetensors"] = {"exit_code": r["exit_code"], **_accuracy(r)}
    return out


def _accuracy(r: dict[str, Any]) -> dict[str, Any]:
    doc = r["doc"] if isinstance(r["doc"], dict) else {}
    return {"base_accuracy": doc.get("base_accuracy"), "error": doc.get("error")}


def _filters(project: Path, epochs: int) -> dict[str, Any]:
    r = cli(project, "filters", "train", MODEL, "--epochs", str(epochs), "--device", "cpu",
            "--quiet")  # fmt: skip
    return {"epochs": epochs, "exit_code": r["exit_code"], "seconds": r["seconds"],
            "classes": r["doc"].get("classes")}  # fmt: skip


def _apply(project: Path, rid: str, preset: Preset) -> dict[str, Any]:
    cli(project, "request", "approve", rid, "--actor", "dpo")
    r = cli(project, "apply", MODEL, "--phase", "mask", "--device", "cpu", "--quiet",
            *preset.apply_extra)  # fmt: skip
    return {"exit_code": r["exit_code"], "seconds": r["seconds"], **_metrics(r["doc"])}


def forget(project: Path, root: Path, work: Path, preset: Preset) -> dict[str, Any]:
    """Filters, one request forgetting ``preset.forget``, a mask apply (after a failed policy:
    the knob its message names, ``filters train --epochs preset.retry_epochs``, then approve
    and apply again), with ``preset.erase`` an erase; each published model exported and
    served at once."""
    out: dict[str, Any] = {"served": {}, "filters": _filters(project, preset.filter_epochs)}
    r = cli(project, "request", "file", "--model", MODEL, "--subject", "alice@example.com",
            "--class", preset.forget, "--legal-basis", "gdpr-17-1-b")  # fmt: skip
    rid = r["doc"]["request"]["id"]
    out["apply"] = _apply(project, rid, preset)
    if out["apply"]["exit_code"] == 19 and preset.retry_epochs:
        out["first_apply"], out["first_filters"] = out["apply"], out["filters"]
        out["filters"] = _filters(project, preset.retry_epochs)
        out["apply"] = _apply(project, rid, preset)
    if out["apply"]["exit_code"] != 0:
        return out
    out["served"]["apply"] = export_and_serve(project, root, work, preset, "mask")
    if preset.erase:
        ref = cli(project, "model", "reference", MODEL, "--quiet", *preset.reference_extra)
        out["reference"] = {"exit_code": ref["exit_code"], "seconds": ref["seconds"],
                            "args": list(preset.reference_extra)}  # fmt: skip
        r = cli(project, "erase", "--model", MODEL, "--device", "cpu", "--quiet")
        out["erase"] = {"exit_code": r["exit_code"], "seconds": r["seconds"],
                        **_metrics(r["doc"])}  # fmt: skip
        if r["exit_code"] == 0:
            out["served"]["erase"] = export_and_serve(project, root, work, preset, "erase")
    return out


def _metrics(doc: dict[str, Any]) -> dict[str, Any]:
    ap = doc.get("apply") or {}  # `lethe apply` and `lethe erase` both print it
    acc = (ap.get("metrics") or {}).get("accuracy") or {}
    return {
        "passed": ap.get("passed"),
        "phase": ap.get("phase"),
        "retain_accuracy": acc.get("retain_accuracy"),
        "forget_accuracy": acc.get("forget_accuracy"),
        "base_retain_accuracy": acc.get("base_retain_accuracy"),
        "depth": ap.get("depth"),
        "verdict": ap.get("verdict"),
        "error": doc.get("error"),
    }


# ---------------------------------------------------------------- the serving path


_RESAMPLE = {"bilinear": 2, "bicubic": 3, "nearest": 0}  # PIL.Image.Resampling values


def serving_feed(files: list[Path], pre: dict[str, Any]) -> npt.NDArray[np.float32]:
    """PNG files -> the float32 NCHW tensor ``lethe.preprocessing`` describes (docs/byo-model.md,
    "Feeding the exported ONNX model"), with PIL and numpy only."""
    from PIL import Image

    c, h, w = pre["input_size"]
    crop = float(pre.get("crop_pct", 1.0))
    sh, sw = (h, w) if crop == 1.0 else (max(h, int(h / crop)), max(w, int(w / crop)))
    resample = _RESAMPLE[pre.get("interpolation", "bilinear")]
    lo, hi = pre.get("input_range", (0.0, 1.0))
    batch = []
    for f in files:
        with Image.open(f) as raw:
            im = raw.convert("RGB" if c == 3 else "L")
            if im.size != (sw, sh):
                im = im.resize((sw, sh), resample)
            a = np.asarray(im, dtype=np.float32).reshape(sh, sw, c) / 255.0
        top, left = (sh - h) // 2, (sw - w) // 2
        batch.append(a[top : top + h, left : left + w] * (hi - lo) + lo)
    x = np.stack(batch).transpose(0, 3, 1, 2)
    mean = np.asarray(pre["mean"], dtype=np.float32).reshape(1, c, 1, 1)
    std = np.asarray(pre["std"], dtype=np.float32).reshape(1, c, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def serve(onnx_path: Path, root: Path, forget_class: str) -> dict[str, Any]:
    """The exported model on the test PNGs, fed as its metadata says: retain / forget accuracy."""
    import onnx
    import onnxruntime as ort

    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    pre = json.loads(meta["lethe.preprocessing"])
    classes, files, y = read_folder(root / "test")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: serving_feed(files, pre)})[0]
    pred = logits.argmax(1)
    keep = y != classes.index(forget_class)
    return {
        "feed": pre,
        "retain_accuracy": float((pred[keep] == y[keep]).mean()),
        "forget_accuracy": float((pred[~keep] == y[~keep]).mean()),
        "n_retain": int(keep.sum()),
        "n_forget": int((~keep).sum()),
    }


def export_and_serve(project: Path, root: Path, work: Path, preset: Preset, tag: str) -> Any:
    path = work / f"{tag}.onnx"
    r = cli(project, "export", "onnx", MODEL, "-o", str(path))
    if r["exit_code"] != 0:
        return {"exit_code": r["exit_code"], "error": r["doc"].get("error")}
    return {"exit_code": 0, "sha256": r["doc"].get("sha256"), **serve(path, root, preset.forget)}


# ---------------------------------------------------------------- the run


def _differences(res: dict[str, Any]) -> dict[str, Any]:
    def diff(a: Any, b: Any) -> float | None:
        return None if a is None or b is None else round(float(a) - float(b), 4)

    reg, out = res["register"], res["outside"]
    d = {"base_accuracy_minus_real": diff(reg["imagenet_pt"]["base_accuracy"],
                                          out["real_accuracy"])}  # fmt: skip
    for phase in ("apply", "erase"):
        m, s = res["forget"].get(phase), res["served"].get(phase)
        if m and s and s.get("exit_code") == 0:
            d[f"{phase}_served_minus_measured_retain"] = diff(s["retain_accuracy"],
                                                              m["retain_accuracy"])  # fmt: skip
            d[f"{phase}_served_minus_measured_forget"] = diff(s["forget_accuracy"],
                                                              m["forget_accuracy"])  # fmt: skip
    return d


def run(preset_name: str, work: Path) -> dict[str, Any]:
    preset = PRESETS[preset_name]
    t0 = time.perf_counter()
    root, project = work / "data", work / "project"
    res: dict[str, Any] = {"benchmark": "byo", "preset": preset_name, "settings": asdict(preset)}
    res["images"] = write_image_folder(root, preset)
    res["outside"] = train_outside(root, preset, work)
    res["init"] = {"exit_code": cli(project, "init")["exit_code"]}
    res["register"] = register_all(project, root, work, preset)
    res["forget"] = forget(project, root, work, preset)
    res["served"] = res["forget"].pop("served")
    res["differences"] = _differences(res)
    res["total_s"] = round(time.perf_counter() - t0, 1)
    res["machine"] = machine("timm", "onnxruntime")
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full")
    ap.add_argument("--out", type=Path, default=None, help=f"result JSON (default {RESULTS})")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temp)")
    args = ap.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        res = run(args.preset, args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            res = run(args.preset, Path(tmp))
    out: Path = args.out or (RESULTS if args.preset != "tiny" else RESULTS_DIR / "byo-tiny.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({"out": str(out), "differences": res["differences"]}, indent=2))
    return res


if __name__ == "__main__":
    main()

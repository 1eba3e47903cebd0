"""Issue 5's benchmark: ONNX export for edge runtimes (DESIGN §7, §9).

For the digits ResNet-18 (32x32, the test suite's recipe; and, with ``--vit``, a small ViT
with random weights, throughput only):

- patch time (patch + optimise + strip + full check) vs a full re-export of the folded model,
  and the base export time (paid once per base model);
- ONNX parity of the patched model against the folded torch model;
- images/s at batch 1 and 64 for torch eager and onnxruntime (CPU), fp32 and int8 (static QDQ,
  uint8 activations, per-channel int8 weights, calibrated on 256 real retain images), for the
  original and the folded model; the folded/original ratio must be 1.00 within noise (folding
  changes weights only, never operators);
- file sizes and the int8 model's forget/retain accuracy (``lethe_audit.metrics``).

    python -m benchmarks.bench_onnx            # writes benchmarks/results/onnx.json and the
                                               # "ONNX export" section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks._common import CACHE, DOCS, RESULTS_DIR, machine, update_docs

RESULTS = RESULTS_DIR / "onnx.json"
SECTION = "onnx"
FORGET = (3,)
DIGITS_RECIPE: dict[str, Any] = {
    "arch": "resnet18",
    "epochs": 10,
    "lr": 2e-3,
    "filter_epochs": 8,
    "seed": 0,
}


def _digits_model(progress: bool) -> tuple[nn.Module, Any, Any, Any, Any]:
    """The digits ResNet-18 and its filter bank (the tests' recipe), cached by recipe."""
    from lethe.data import load_digits, stratified_split, to_dataset
    from lethe.filters import FilterBank, train
    from lethe.models import ModelSpec, create_model, fit, load_checkpoint, save_checkpoint

    key = hashlib.sha256(json.dumps(DIGITS_RECIPE, sort_keys=True).encode()).hexdigest()[:16]
    model_path = CACHE / f"onnx-digits-{key}.safetensors"
    bank_path = CACHE / f"onnx-digits-{key}-bank.safetensors"
    data = load_digits()
    tr, te = stratified_split(data, test_fraction=0.25, seed=DIGITS_RECIPE["seed"])
    if model_path.exists() and bank_path.exists():
        model, spec = load_checkpoint(model_path)
        return model, spec, FilterBank.load(bank_path, model), tr, te
    spec = ModelSpec("resnet18", 10, in_chans=1, input_size=(32, 32))
    ds = to_dataset(tr, spec.preprocess)
    torch.manual_seed(DIGITS_RECIPE["seed"])
    model = create_model(spec, seed=DIGITS_RECIPE["seed"])
    fit(
        model,
        ds,
        epochs=DIGITS_RECIPE["epochs"],
        lr=DIGITS_RECIPE["lr"],
        seed=DIGITS_RECIPE["seed"],
        progress=progress,
    )
    bank = train(
        model,
        FilterBank.init(model, 10, class_names=data.classes),
        ds,
        epochs=DIGITS_RECIPE["filter_epochs"],
        seed=DIGITS_RECIPE["seed"],
        progress=progress,
    )
    save_checkpoint(model, spec, model_path, trained_by="lethe")
    bank.save(bank_path)
    return model, spec, bank, tr, te


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _throughput(run: Callable[[], Any], batch: int, seconds: float) -> float:
    """Images/s: warm up, then as many calls as fit in ``seconds`` (at least 5)."""
    for _ in range(3):
        run()
    n, start = 0, time.perf_counter()
    while n < 5 or time.perf_counter() - start < seconds:
        run()
        n += 1
    return n * batch / (time.perf_counter() - start)


def _runners(
    models: dict[str, Any], x: dict[int, np.ndarray], threads: int | None
) -> dict[str, Callable[[int], Any]]:
    import onnxruntime as ort

    out: dict[str, Callable[[int], Any]] = {}
    for name, m in models.items():
        if isinstance(m, nn.Module):
            m.eval()
            xt = {b: torch.from_numpy(v) for b, v in x.items()}

            def torch_run(b: int, m: nn.Module = m, xt: dict[int, torch.Tensor] = xt) -> Any:
                with torch.inference_mode():
                    return m(xt[b])

            out[name] = torch_run
        else:
            opts = ort.SessionOptions()
            # Idle onnxruntime threads spin-wait by default and would steal the CPU from
            # whatever is measured next (torch eager above all) on a small machine.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if threads is not None:
                opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(
                m.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            iname = sess.get_inputs()[0].name

            def ort_run(b: int, sess: Any = sess, iname: str = iname) -> Any:
                return sess.run(None, {iname: x[b]})

            out[name] = ort_run
    return out


Samples = dict[str, dict[str, list[float]]]


def _measure_throughput(
    models: dict[str, Any], x: np.ndarray, *, seconds: float, rounds: int, threads: int | None
) -> Samples:
    """Images/s of every model in ``rounds`` interleaved rounds (model -> batch -> samples).

    Every model runs once per round, so a change of machine load hits all models alike; the
    order is reversed every other round because the position in a round matters (measured:
    the second of two identical onnxruntime sessions ran ~20% slower at batch 1).
    """
    xs = {b: np.ascontiguousarray(x[:b]) for b in (1, 64)}
    runners = _runners(models, xs, threads)
    res: Samples = {n: {"1": [], "64": []} for n in models}
    for r in range(rounds):
        order = list(runners.items())
        if r % 2:
            order.reverse()
        for b in (1, 64):
            for name, run in order:
                res[name][str(b)].append(_throughput(functools.partial(run, b), b, seconds))
    return res


def _medians(samples: Samples) -> dict[str, dict[str, float]]:
    return {n: {b: statistics.median(v) for b, v in d.items()} for n, d in samples.items()}


def _ratios(samples: Samples, pairs: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """Median over rounds of the per-round ratio (paired: same round, same machine load)."""
    return {
        label: {
            b: statistics.median(
                n / o for n, o in zip(samples[new][b], samples[old][b], strict=True)
            )
            for b in ("1", "64")
        }
        for label, (new, old) in pairs.items()
    }


def _int8_metrics(int8: Any, base_fp32: Any, x_test: np.ndarray, y_test: np.ndarray) -> Any:
    from lethe_audit.metrics import ImageSet, OnnxBackend, Policy, evaluate, random_onnx_model

    producers = {o: n for n in int8.graph.node for o in n.output}
    node = producers[int8.graph.output[0].name]
    while node.op_type in ("DequantizeLinear", "QuantizeLinear"):
        node = producers[node.input[0]]
    random_model, _ = random_onnx_model(base_fp32, seed=0)
    res = evaluate(
        OnnxBackend(int8, features=str(node.input[0])),
        ImageSet(x_test, y_test, 10),
        forget=FORGET,
        base=OnnxBackend(base_fp32),
        random_model=OnnxBackend(random_model),
        seed=0,
        progress=False,
    )
    verdict = Policy(max_parity=None).evaluate(res)
    return res, verdict


def bench_digits(
    *, seconds: float, rounds: int, repeats: int, threads: int | None, progress: bool
) -> dict[str, Any]:
    from lethe.export import (
        check_parity,
        export_base,
        patch,
        quantize_int8,
        reexport,
    )
    from lethe.filters import fold

    model, spec, bank, tr, te = _digits_model(progress)
    pre = spec.preprocess
    x_train, x_test = pre.numpy(tr.x), pre.numpy(te.x)
    chw = pre.input_size
    scales = bank.scales(FORGET)
    folded = fold(model, bank, FORGET)

    t = time.perf_counter()
    base = export_base(model, input_shape=chw, targets=bank.target_names)
    base_export_s = time.perf_counter() - t
    patch_s = _median_time(lambda: patch(base, scales), repeats)
    reexport_s = _median_time(lambda: reexport(folded, input_shape=chw), repeats)
    fp32 = patch(base, scales)
    original = patch(base, {})
    parity = check_parity(fp32, folded, x_test)

    retain = x_train[tr.y != FORGET[0]]
    t = time.perf_counter()
    int8 = quantize_int8(fp32, retain[:: max(1, len(retain) // 256)][:256], progress=progress)
    quantize_s = time.perf_counter() - t
    int8_original = quantize_int8(
        original, retain[:: max(1, len(retain) // 256)][:256], progress=progress
    )
    res, verdict = _int8_metrics(int8, original, x_test, te.y)
    fp32_res, _ = _int8_metrics(fp32, original, x_test, te.y)

    models = {
        "torch_original": model,
        "torch_folded": folded,
        "ort_fp32_original": original,
        "ort_fp32_folded": fp32,
        "ort_int8_original": int8_original,
        "ort_int8_folded": int8,
    }
    samples = _measure_throughput(models, x_test, seconds=seconds, rounds=rounds, threads=threads)
    tp = _medians(samples)
    ratios = _ratios(
        samples,
        {
            "folded_vs_original_torch": ("torch_folded", "torch_original"),
            "folded_vs_original_ort_fp32": ("ort_fp32_folded", "ort_fp32_original"),
            "folded_vs_original_ort_int8": ("ort_int8_folded", "ort_int8_original"),
            "ort_fp32_vs_torch": ("ort_fp32_folded", "torch_folded"),
            "ort_int8_vs_ort_fp32": ("ort_int8_folded", "ort_fp32_folded"),
        },
    )
    return {
        "model": {"arch": "resnet18", "input": list(chw), "recipe": DIGITS_RECIPE},
        "forget": list(FORGET),
        "timings_s": {
            "base_export": base_export_s,
            "patch": patch_s,
            "reexport": reexport_s,
            "patch_speedup": reexport_s / patch_s,
            "quantize_int8": quantize_s,
        },
        "parity": parity.to_dict(),
        "nodes": {
            "base_unoptimised": len(base.model.graph.node),
            "original": len(original.graph.node),
            "folded": len(fp32.graph.node),
            "int8": len(int8.graph.node),
        },
        "ops_identical": [n.op_type for n in original.graph.node]
        == [n.op_type for n in fp32.graph.node],
        "file_bytes": {"fp32": fp32.ByteSize(), "int8": int8.ByteSize()},
        "accuracy": {
            "fp32": {
                "forget": fp32_res.accuracy.forget_accuracy,
                "retain": fp32_res.accuracy.retain_accuracy,
                "base_retain": fp32_res.accuracy.base_retain_accuracy,
            },
            "int8": {
                "forget": res.accuracy.forget_accuracy,
                "retain": res.accuracy.retain_accuracy,
                "zrf": None if res.zrf is None else res.zrf.zrf,
                "probe_auc": None if res.probe is None else res.probe.auc,
                "policy_passed": verdict.passed,
                "policy_reasons": list(verdict.reasons),
            },
        },
        "images_per_s": tp,
        "images_per_s_samples": samples,
        "ratios": ratios,
    }


def bench_vit(*, seconds: float, rounds: int, repeats: int, threads: int | None) -> dict[str, Any]:
    """A small ViT (random weights, random filter values): speed only."""
    import timm

    from lethe.export import export_base, patch, quantize_int8, reexport
    from lethe.filters import FilterBank, fold

    torch.manual_seed(0)
    chw = (1, 32, 32)
    model = timm.create_model(
        "vit_tiny_patch16_224", num_classes=10, in_chans=1, img_size=32, patch_size=4
    ).eval()
    bank = FilterBank.init(model, 10)
    g = torch.Generator().manual_seed(0)
    bank = bank.with_alpha(
        {k: 0.6 + 0.4 * torch.rand(a.shape, generator=g) for k, a in bank.alpha.items()}
    )
    scales = bank.scales(FORGET)
    folded = fold(model, bank, FORGET)
    t = time.perf_counter()
    base = export_base(model, input_shape=chw, targets=bank.target_names)
    base_export_s = time.perf_counter() - t
    patch_s = _median_time(lambda: patch(base, scales), repeats)
    reexport_s = _median_time(lambda: reexport(folded, input_shape=chw), repeats)
    fp32, original = patch(base, scales), patch(base, {})
    x = np.random.default_rng(0).standard_normal((64, *chw)).astype(np.float32)
    int8 = quantize_int8(fp32, x, progress=False)
    models = {
        "torch_original": model,
        "torch_folded": folded,
        "ort_fp32_original": original,
        "ort_fp32_folded": fp32,
        "ort_int8_folded": int8,
    }
    samples = _measure_throughput(models, x, seconds=seconds, rounds=rounds, threads=threads)
    tp = _medians(samples)
    return {
        "model": {"arch": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4},
        "note": "random weights and random-input calibration: throughput only, no accuracy",
        "timings_s": {
            "base_export": base_export_s,
            "patch": patch_s,
            "reexport": reexport_s,
            "patch_speedup": reexport_s / patch_s,
        },
        "file_bytes": {"fp32": fp32.ByteSize(), "int8": int8.ByteSize()},
        "images_per_s": tp,
        "ratios": _ratios(
            samples,
            {
                "folded_vs_original_torch": ("torch_folded", "torch_original"),
                "folded_vs_original_ort_fp32": ("ort_fp32_folded", "ort_fp32_original"),
                "ort_fp32_vs_torch": ("ort_fp32_folded", "torch_folded"),
                "ort_int8_vs_ort_fp32": ("ort_int8_folded", "ort_fp32_folded"),
            },
        ),
    }


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _section(result: dict[str, Any]) -> str:
    m, d = result["machine"], result["digits_resnet18"]
    t, tp, r = d["timings_s"], d["images_per_s"], d["ratios"]
    acc = d["accuracy"]
    rows = [
        ("torch eager, original", "torch_original"),
        ("torch eager, folded", "torch_folded"),
        ("onnxruntime fp32, original", "ort_fp32_original"),
        ("onnxruntime fp32, folded", "ort_fp32_folded"),
        ("onnxruntime int8, original", "ort_int8_original"),
        ("onnxruntime int8, folded", "ort_int8_folded"),
    ]
    lines = [
        "## ONNX export",
        "",
        "`python -m benchmarks.bench_onnx` (results: `benchmarks/results/onnx.json`). "
        f"CPU: {m['cpu']}, {m['cpu_count']} cores (shared; load average at start "
        f"{m['load_average_at_start']}), torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"onnxscript {m['onnxscript']}. Digits ResNet-18 at 1x32x32 (the tests' recipe), "
        f"class {d['forget'][0]} forgotten. Throughput: median of "
        f"{result['settings']['rounds']} interleaved rounds of {result['settings']['seconds']:g} s "
        "per model and batch size (order reversed every other round); ratios: median of the "
        "per-round ratios.",
        "",
        "| model | images/s, batch 1 | images/s, batch 64 |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {_fmt(tp[k]['1'])} | {_fmt(tp[k]['64'])} |" for label, k in rows]
    lines += [
        "",
        "| ratio | batch 1 | batch 64 |",
        "|---|---|---|",
    ]
    for k, v in r.items():
        lines.append(f"| {k.replace('_', ' ')} | {v['1']:.2f} | {v['64']:.2f} |")
    lines += [
        "",
        f"- Patch (scale initializers + onnxscript optimiser + strip + full check): "
        f"{t['patch']:.2f} s; full re-export of the folded model: {t['reexport']:.2f} s "
        f"(patching is {t['patch_speedup']:.1f}x faster); base export, once per model: "
        f"{t['base_export']:.2f} s. Folded and original graphs have the same operators: "
        f"{'yes' if d['ops_identical'] else 'NO'} ({d['nodes']['folded']} nodes; the "
        f"unoptimised export has {d['nodes']['base_unoptimised']}).",
        f"- Parity, patched ONNX vs folded torch, {d['parity']['samples']} test images: "
        f"max |Δlogit| = {d['parity']['max_abs_diff']:.2g} (threshold "
        f"{d['parity']['threshold']:g}).",
        f"- int8 (static QDQ, uint8 activations, per-channel int8 weights, 256 retain images): "
        f"{d['file_bytes']['int8'] / 1e6:.1f} MB vs {d['file_bytes']['fp32'] / 1e6:.1f} MB "
        f"fp32; quantization took {t['quantize_int8']:.1f} s. Forget accuracy "
        f"{acc['int8']['forget']:.3f} (fp32 {acc['fp32']['forget']:.3f}), retain "
        f"{acc['int8']['retain']:.3f} (fp32 {acc['fp32']['retain']:.3f}, unfiltered "
        f"{acc['fp32']['base_retain']:.3f}); default policy "
        f"{'passed' if acc['int8']['policy_passed'] else 'FAILED'}.",
    ]
    if "vit" in result:
        v = result["vit"]
        vt, vtp = v["timings_s"], v["images_per_s"]
        lines += [
            f"- ViT-Tiny (patch 4, 1x32x32, random weights; speed only): patch "
            f"{vt['patch']:.2f} s vs re-export {vt['reexport']:.2f} s; images/s at batch 1 / 64: "
            f"torch {_fmt(vtp['torch_folded']['1'])} / {_fmt(vtp['torch_folded']['64'])}, "
            f"onnxruntime fp32 {_fmt(vtp['ort_fp32_folded']['1'])} / "
            f"{_fmt(vtp['ort_fp32_folded']['64'])}, int8 {_fmt(vtp['ort_int8_folded']['1'])} / "
            f"{_fmt(vtp['ort_int8_folded']['64'])}; folded/original (onnxruntime fp32) "
            f"{v['ratios']['folded_vs_original_ort_fp32']['1']:.2f} / "
            f"{v['ratios']['folded_vs_original_ort_fp32']['64']:.2f}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per throughput sample")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of patch/re-export timings")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and onnxruntime (default: their own defaults)",
    )
    ap.add_argument("--vit", action="store_true", help="also measure a small ViT")
    ap.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {
        "format": "lethe-bench/onnx/v1",
        "machine": machine("onnx", "onnxruntime", "onnxscript", "lethe"),
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "threads": args.threads,
        },
    }
    common = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "threads": args.threads,
    }
    result["digits_resnet18"] = bench_digits(**common, progress=not args.quiet)
    if args.vit:
        result["vit"] = bench_vit(**common)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if not args.no_docs:
        update_docs(DOCS, SECTION, _section(result))
    print(_section(result))
    return result


if __name__ == "__main__":
    main()

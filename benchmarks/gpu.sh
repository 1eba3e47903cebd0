#!/usr/bin/env bash
# The `gpu` preset of bench_unlearning in time-boxed parts, each sized for one 10-minute call on
# a lent GPU (an H200): Lethe's coverage of every setup first, then the all-method comparison
# until the part's time is up (the JSON lists what the deadline skipped).
#   benchmarks/gpu.sh check OUTDIR   # toy preset + a small-stem ResNet-18 on CUDA (seconds)
#   benchmarks/gpu.sh mnist OUTDIR   # MNIST + Fashion-MNIST, whole
#   benchmarks/gpu.sh cifar OUTDIR   # CIFAR-10, 1,800 / 500 images per class (seeded)
#   benchmarks/gpu.sh compare OUTDIR # in parallel, one process each: every method on
#                                    # cifar10_resnet18, mnist_resnet18 and mnist_cnn; Lethe on
#                                    # mnist_vit (the GPU idles while one process evaluates)
# then, anywhere:
#   ./dev python -m benchmarks.bench_unlearning --preset gpu --render OUTDIR/gpu-*-lethe.json \
#       OUTDIR/gpu-*-compare.json
# PYTHON (default python3) runs the benchmark; BUDGET (default 540) is a part's seconds.
set -uo pipefail
part=${1:?part: check, mnist or cifar}
out=${2:?output folder}
py=${PYTHON:-python3}
budget=${BUDGET:-540}
t0=$(date +%s)
mkdir -p "$out"
bench() { "$py" -m benchmarks.bench_unlearning --preset "$@" --quiet --no-docs; }
case $part in
  check)
    "$py" - <<'PY' || exit 3
import torch
from lethe.models import ModelSpec, create_model
m = create_model(ModelSpec("resnet18", 10, in_chans=3, input_size=(32, 32), small_stem=True)).cuda()
print("resnet18 small stem on", torch.cuda.get_device_name(0), tuple(m(torch.zeros(2, 3, 32, 32).cuda()).shape))
PY
    bench toy --out "$out/toy.json" --cache "$out/toy-cache" 2>&1 | tee "$out/toy.log"
    exit "${PIPESTATUS[0]}" ;;
  mnist) coverage=(mnist_resnet18 mnist_cnn fashion_mnist_resnet18 mnist_vit)
         compare=(mnist_resnet18 mnist_cnn) ;;
  cifar) coverage=(cifar10_resnet18 cifar10_vit)
         compare=(cifar10_resnet18) ;;
  compare)
    # Each process stops starting runs 120 s before the budget and is stopped at it; its JSON
    # is saved after every finished step either way.
    export OMP_NUM_THREADS=4
    for job in "cifar10_resnet18" "mnist_resnet18" "mnist_cnn" "mnist_vit --methods lethe"; do
      name=${job%% *}
      # shellcheck disable=SC2086
      timeout "$budget" "$py" -m benchmarks.bench_unlearning --preset gpu --quiet --no-docs \
        --only $job --deadline $((budget - 120)) --out "$out/gpu-compare-$name.json" \
        >"$out/gpu-compare-$name.log" 2>&1 &
    done
    wait
    exit 0 ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
bench gpu --only "${coverage[@]}" --methods lethe --deadline $((budget / 2)) \
  --out "$out/gpu-$part-lethe.json" 2>&1 | tee "$out/gpu-$part-lethe.log"
# Leave time for the comparison run in progress when the deadline passes (a retrain).
left=$((budget - ($(date +%s) - t0) - 75))
bench gpu --only "${compare[@]}" --deadline "$left" \
  --out "$out/gpu-$part-compare.json" 2>&1 | tee "$out/gpu-$part-compare.log"

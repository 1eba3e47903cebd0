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
#   benchmarks/gpu.sh erase OUTDIR   # the gpu-erase preset (phase 2 beside every method) in
#                                    # parallel shards; everything in OUTDIR/erase.tgz
# then, anywhere:
#   ./dev python -m benchmarks.bench_unlearning --preset gpu --render OUTDIR/gpu-*-lethe.json \
#       OUTDIR/gpu-*-compare.json
# PYTHON (default python3) runs the benchmark; BUDGET (default 540) is a part's seconds.
set -uo pipefail
part=${1:?part: check, mnist, cifar, compare or erase}
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
  erase)
    # The gpu-erase preset (issue 13: phase 2 beside every method) as parallel processes on
    # the one GPU, each a shard K/N of a setup's forget sets. Shard 0 trains the base model
    # and the filter bank into the shared cache; the other shards start once the bank is
    # there. Every process stops starting comparison runs 100 s before the budget; the
    # results and logs end up in one archive, $out/erase.tgz (the tool returns 8 files).
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
    preset=${PRESET:-gpu-erase}
    cache=${CACHE_DIR:-"$out/cache"}
    jobs=${JOBS:-"cifar10_resnet18:3 mnist_resnet18:2 mnist_cnn:2 mnist_vit:2"}
    one() {  # setup K N [bench_unlearning options]
      local name=$1 k=$2 n=$3; shift 3
      local left=$((budget - ($(date +%s) - t0)))
      ((left > 0)) || return 0  # (timeout 0 would mean no limit)
      # shellcheck disable=SC2086
      timeout "$left" "$py" -m benchmarks.bench_unlearning --preset "$preset" --quiet \
        --no-docs --only "$name" --shard "$k/$n" --deadline $((left - 100)) --cache "$cache" \
        --out "$out/erase-$name-$k.json" "$@" >"$out/erase-$name-$k.log" 2>&1
    }
    for job in $jobs; do
      name=${job%%:*} n=${job##*:} extra=()
      [[ $name == *vit ]] && extra=(--methods lethe lethe_erase retrain head_mask)
      one "$name" 0 "$n" "${extra[@]}" &
      for ((k = 1; k < n; k++)); do
        (until compgen -G "$cache/$name-bank-*.json" >/dev/null; do
           sleep 5; (( $(date +%s) - t0 < budget - 100 )) || exit 0
         done
         one "$name" "$k" "$n" "${extra[@]}") &
      done
    done
    wait
    (cd "$out" && tar czf erase.tgz erase-*.json erase-*.log)
    exit 0 ;;
  *) echo "unknown part $part" >&2; exit 2 ;;
esac
bench gpu --only "${coverage[@]}" --methods lethe --deadline $((budget / 2)) \
  --out "$out/gpu-$part-lethe.json" 2>&1 | tee "$out/gpu-$part-lethe.log"
# Leave time for the comparison run in progress when the deadline passes (a retrain).
left=$((budget - ($(date +%s) - t0) - 75))
bench gpu --only "${compare[@]}" --deadline "$left" \
  --out "$out/gpu-$part-compare.json" 2>&1 | tee "$out/gpu-$part-compare.log"

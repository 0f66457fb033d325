#!/usr/bin/env bash
# Every GPU figure in one run, on a lent GPU machine (benchmarks/README.md, "On the GPU
# machine"): from the repository root, with `.whl/` and `.data/` prepared beforehand by
# ../shared/tools/device-wheels. Writes its sections of docs/benchmarks.md and copies the file
# to $OUT/docs/ (or ./gpu-out/docs/ when $OUT is not set).
#
#   throughput.py: MultiMNIST-LeNet and adult, 10 epochs, --batch auto (targets: >= 30x and
#     >= 50x the plain loop; auto never out of memory);
#   end_to_end.py: a study submitted over REST, one worker on the GPU, on a SQLite file, next
#     to the trainer alone (target: service / trainer >= 0.90);
#   strategy_cost.py: every weighting strategy's time per step against `fixed`, K = 1 and 64,
#     on adult and MultiMNIST-LeNet;
#   architectures.py: every architecture's per-epoch time on MultiMNIST-LeNet at K = 1 and 16
#     against hard sharing (accuracy is the CPU run's: the same trials).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"
out="${OUT:-$PWD/gpu-out}"
mkdir -p "$out/docs"
trap 'cp docs/benchmarks.md "$out/docs/"' EXIT  # what has run so far comes back, even on a failure

python3 benchmarks/throughput.py --experiment multi_mnist --epochs 10 --trials 256 \
    --plain-trials 4 --batch auto --device cuda --precision bf16 --data-dir .data
python3 benchmarks/throughput.py --experiment adult --epochs 10 --trials 512 \
    --plain-trials 4 --batch auto --device cuda --precision bf16 --data-dir .data
python3 benchmarks/end_to_end.py --experiments adult multi_mnist --databases sqlite \
    --trials 1000 --batch 128 --epochs 2 --max-train-samples 0 --device cuda \
    --data-dir .data --section "End to end (service) on the GPU"
python3 benchmarks/strategy_cost.py --experiments adult multi_mnist --ks 1 64 --steps 4 16 \
    --device cuda --data-dir .data
python3 benchmarks/architectures.py --skip-accuracy --timing-k 1 16 --timing-samples 60000 \
    --timing-eval-rows 10000 --device cuda --data-dir .data

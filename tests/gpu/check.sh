#!/usr/bin/env bash
# Every GPU check of the project in one run (under 8 minutes on an H100-class GPU), results to results/gpu/.
#   bash tests/gpu/check.sh            # on the GPU machine, from the repository root
#   HANCROSS_GPU_CHECK_CPU=1 bash tests/gpu/check.sh   # the same script at tiny sizes on a CPU (its CPU test)
# Steps: (1) a few hundred training steps of the optimal config (224 px) on paper-scale data, loss falling, no NaN;
# (2) the same fp32 steps on CPU and GPU agree; (3) the benchmark (HANCross optimal, HiViFAN default; inference at
# bs 1/32/128, training at 32/128) with the seed's table beside it; (4) one paper notebook on the paper profile.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}; BIN=$(dirname "$PY")
OUT=${HANCROSS_GPU_OUT:-results/gpu}
mkdir -p "$OUT"
if [ "${HANCROSS_GPU_CHECK_CPU:-0}" = 1 ]; then
  DEVICE=cpu; SCALE=tiny; STEPS=24; SIDE=16; BS="1 4"; STEP_BS=4; LR=1e-3; SIZES="[600]"; QUICK=--quick; export OMP_NUM_THREADS=1
else
  DEVICE=cuda; SCALE=paper; STEPS=300; SIDE=224; BS="1 32 128"; STEP_BS=0; LR=0; SIZES="[1000, 10000]"; QUICK=
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run with HANCROSS_GPU_CHECK_CPU=1 for the CPU rehearsal')"
fi
DATA=${HANCROSS_GPU_DATA:-data/gpu_check_$SCALE}
t0=$(date +%s)
[ -f "$DATA/metadata.json" ] || $BIN/hancross-generate --name gpu_check --out "$DATA" --scale $SCALE
echo "data ready: $(( $(date +%s) - t0 )) s"

$PY - "$DEVICE" "$DATA" "$STEPS" "$SIDE" "$OUT" "$STEP_BS" "$LR" <<'PY'
import json, sys, time, torch
import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
from dataclasses import replace
from hancross.core import DataSpec
from hancross.data.dataset import hancross_dls
from hancross.models.registry import get_model, load_config
from hancross.deploy.bench import train_steps, device_parity
dev, data, steps, side, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
bs, lr = int(sys.argv[6]) or None, float(sys.argv[7]) or None   # 0: the config's batch size (32) and learning rate
res = {'device': torch.cuda.get_device_name() if dev == 'cuda' else 'cpu', 'torch': torch.__version__}
# (1) the optimal config at `side` px on the data, bf16 + fused attention on the GPU
cfg = load_config('configs/hancross_optimal.yaml')
bs = bs or cfg.training.batch_size
t = time.time(); dls = hancross_dls(data, bs=bs, img_size=(side, side)); res['load_s'] = time.time() - t
torch.manual_seed(0)
model = get_model('hancross', cfg.model, dls.spec)
t = time.time(); losses = train_steps(model, dls, steps, dev, lr=lr or cfg.training.learning_rate); res['train_s'] = time.time() - t
k = max(steps // 10, 1)
first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
res['steps'] = {'n': steps, 'img_size': side, 'bs': bs, 'first_mean': first, 'last_mean': last,
                'finite': all(l == l and abs(l) < float('inf') for l in losses), 'samples_per_s': steps * bs / res['train_s']}
fig, ax = plt.subplots(figsize=(5, 3)); ax.plot(losses, lw=0.8); ax.set_xlabel('step'); ax.set_ylabel('training loss')
ax.set_title(f"HANCross optimal config, {side} px, {res['device']}", fontsize=9); fig.tight_layout()
fig.savefig(f'{out}/train_steps.png', dpi=120); fig.savefig(f'{out}/train_steps.pdf')
# (2) fp32 parity CPU vs this device
spec = replace(dls.spec, img_size=(64, 64) if dev == 'cuda' else (16, 16))
res['parity'] = device_parity('hancross', spec, devices=('cpu', dev), steps=3, bs=4, config='reference' if dev == 'cuda' else 'cpu')
json.dump(res, open(f'{out}/check.json', 'w'), indent=1)
print(json.dumps({k: res[k] for k in ('device', 'steps')}, indent=1))
assert res['steps']['finite'], 'a loss was NaN or infinite'
assert last < first, f'the loss did not fall: {first:.4f} -> {last:.4f}'
assert res['parity']['max_loss_rel_diff'] < 1e-3, f"CPU and {dev} disagree: {res['parity']}"
PY
echo "steps and parity: $(( $(date +%s) - t0 )) s"

# (3) the benchmark: reference configs at $SIDE px
$BIN/hancross-bench --device $DEVICE --config reference --img_size $SIDE --models hancross hivifan --batch_sizes $BS \
  --sizes 0 --data_dir "$DATA" --out_dir "$OUT" $QUICK
echo "benchmark: $(( $(date +%s) - t0 )) s"

# (4) one paper notebook on the paper profile: the benchmark notebook on this device
$PY -m papermill -k python3 -l python nbs/paper/10_benchmark.ipynb "$OUT/10_benchmark.ipynb" -p profile paper -p device $DEVICE \
  -p fig_dir "$OUT" -p out_dir "$OUT" -y "sizes: $SIZES" -p threads 1 --cwd nbs/paper > /dev/null
echo "paper notebook: $(( $(date +%s) - t0 )) s; results in $OUT"

#!/bin/bash
# Issue 17's prepared GPU training: every network on a lent CUDA machine in at most 10 minutes in all,
# the same recipes, data rules and validation split as training/train_zoo.sh (the CPU runs), more steps.
#
# Here, once (pip and ../shared/data are reachable only here):
#   bash training/gpu_check.sh wheels      # the Python 3.12 wheels the GPU image lacks (.whl/, ~18 MB)
#   bash training/train_gpu.sh pack        # a data bundle that fits the device tool's 64 MiB (.gpu_data/)
# There (the device tool's run, carry [".whl", ".gpu_data"], timeout_s 600):
#   bash training/train_gpu.sh
# It writes $OUT/weights.tar (<model>.safetensors and <model>.json: the best validation weights and their
# cards, which name the GPU) and $OUT/train_gpu.log; copy the files that beat the shipped ones into
# models/weights/ after `mattebox eval --suite` (training/train_zoo.sh says how).
#
# Budget: each network gets --minutes (a time budget: the run ends validated and saved at the first
# step past it) sized so that all six end within 8.5 minutes with start-up and validation:
# lightweight 75 s, lightweight_octave 75 s, bgm 80 s, bgm_excite 80 s, msia 75 s, dcnn 60 s.
# The --steps are what an H100/H200-class GPU should reach in that time at batch 16, 320 px crops
# (an estimate: no GPU has been lent yet); the schedules (excitation curriculum, MSIA's loss weights)
# are laid out on --steps, so a run the budget cuts short says so on its card (steps < planned_steps).
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
DATA=.gpu_data
if [ "$1" = pack ]; then  # a subset, never committed: .gpu_data is in .git/info/exclude
  grep -qx '/.gpu_data/' .git/info/exclude || echo /.gpu_data/ >> .git/info/exclude
  S=../shared/data
  rm -rf $DATA && mkdir -p $DATA/alphamatting/input $DATA/alphamatting/gt $DATA/composition1k/crops $DATA/backgrounds
  cp $S/alphamatting/input/*.png $DATA/alphamatting/input/ && cp $S/alphamatting/gt/*.png $DATA/alphamatting/gt/
  # every 10th composition1k crop pair (41 of 405) and 50 backgrounds: with the wheels and the tree, under 64 MiB
  ls $S/composition1k/crops/*_image.png | awk 'NR % 10 == 1' | while read -r f; do
    cp "$f" "${f%_image.png}_alpha.png" $DATA/composition1k/crops/; done
  ls $S/backgrounds/bsds500/train/*.jpg | head -n 50 | xargs -I{} cp {} $DATA/backgrounds/
  du -sh $DATA
  exit 0
fi
. training/gpu_env.sh  # PY, the carried wheels, the gRPC code
[ -d $DATA ] || { echo "no $DATA: run 'bash training/train_gpu.sh pack' here first and carry it"; exit 2; }
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT" runs/gpu-runs
export MATTEBOX_WEIGHTS="$PWD/runs/gpu-candidates"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/train_gpu.log"
L="alphamatting.com low-res training set (Rhemann et al., CVPR 2009): no licence stated; Composition-1k test foregrounds (Xu et al., CVPR 2017): Adobe Deep Image Matting dataset licence, non-commercial research use only; BSDS500 train backgrounds (Arbelaez et al., TPAMI 2011): research use, no licence stated"
run() {  # model steps seconds [extra train arguments]
  local m=$1 steps=$2 secs=$3; shift 3
  PYTHONUNBUFFERED=1 timeout $((secs + 60)) $PY -m plugin.cli.main train --model "$m" --device cuda --steps "$steps" \
    --minutes "$(awk "BEGIN { print $secs / 60 }")" --batch 16 --crop 320 --val-every 100 --save-every 100 \
    --data $DATA/alphamatting --data $DATA/composition1k --backgrounds $DATA/backgrounds --data-licence "$L" \
    --out "runs/gpu-runs/$m" --install --progress text "$@" >> "$OUT/train_gpu.log" 2>&1
  echo "$m: exit $?" | tee -a "$OUT/train_gpu.log"
}
run lightweight 3000 75
run lightweight_octave 3000 75
run bgm 2500 80
run bgm_excite 2500 80
run msia 3000 75 --init models/weights/msia.safetensors
run dcnn 20000 60
tar -cf "$OUT/weights.tar" -C runs/gpu-candidates .  # one file back (the device tool returns 8 at most)
tail -n 30 "$OUT/train_gpu.log"

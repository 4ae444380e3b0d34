#!/bin/bash
# Train the shipped networks with `mattebox train` on a CPU, one at a time (two at once slowed each ~15x), niced.
# Every run resumes where it stopped: run this script again after an interruption.
#
# Data: the alphamatting photos and the composition1k objects (each holding out its own validation split:
# alphamatting's last 4 photos, one composition1k object group in 8), over BSDS500 train backgrounds.
# The candidates are installed into runs/candidates (a studio weights folder, $MATTEBOX_WEIGHTS), not over
# the shipped weights: `mattebox eval --suite` with and without MATTEBOX_WEIGHTS=runs/candidates decides
# which ship (training/compare_zoo.sh), and the chosen files are copied into models/weights/.
#
# Fair comparisons (issue 17): lightweight and lightweight_octave (the two readings of seed 003's OCBlock)
# from scratch with the same data, steps and seed; bgm and bgm_excite likewise. msia continues from its
# shipped weights (--init; the optimiser state does not travel). On 2 cores: about 45 minutes in all.
cd "$(dirname "$0")/.."
export MATTEBOX_WEIGHTS="$PWD/runs/candidates"
mkdir -p runs/candidates
D="--data ../shared/data/alphamatting --data ../shared/data/composition1k --backgrounds ../shared/data/backgrounds/bsds500/train --save-every 50 --progress json --device ${DEVICE:-auto}"
L="alphamatting.com low-res training set (Rhemann et al., CVPR 2009): no licence stated; Composition-1k test foregrounds (Xu et al., CVPR 2017): Adobe Deep Image Matting dataset licence, non-commercial research use only; BSDS500 train backgrounds (Arbelaez et al., TPAMI 2011): research use, no licence stated"
run() {  # model steps val_every [extra train arguments]
  local m=$1 steps=$2 every=$3; shift 3
  if grep -q "\"steps\": $steps," "runs/$m/$m.json" 2>/dev/null; then return; fi
  local R=""; [ -f "runs/$m/checkpoint.safetensors" ] && R="--resume"
  nice -n 19 .venv/bin/mattebox train --model "$m" --steps "$steps" --val-every "$every" $D --data-licence "$L" \
    --out "runs/$m" --install $R "$@" >> "runs/$m.log" 2>&1
}
run lightweight 400 100
run lightweight_octave 400 100
run bgm 300 100
run bgm_excite 300 100
run msia 300 100 --init models/weights/msia.safetensors
run dcnn 3000 1000

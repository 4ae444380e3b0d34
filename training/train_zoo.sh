#!/bin/bash
# Train the shipped weights (installed into models/weights/) with `mattebox train` on the 2-core CPU, one at a time (two at once slowed each ~15x), niced;
# every run resumes where it stopped (run this script again after an interruption).
cd "$(dirname "$0")/.."
D="--data ../shared/data/alphamatting --backgrounds ../shared/data/backgrounds/bsds500/train --save-every 50 --progress json"
L="alphamatting.com low-res training set (Rhemann et al., CVPR 2009) and BSDS500 train backgrounds (Arbelaez et al., TPAMI 2011): research data, no licence stated by either"
run() {  # model steps val_every (dcnn validates rarely: each validation solves closed-form + KNN per image)
  if grep -q "\"steps\": $2," runs/$1/$1.json 2>/dev/null; then return; fi
  R=""; [ -f runs/$1/checkpoint.safetensors ] && R="--resume"
  nice -n 19 .venv/bin/mattebox train --model $1 --steps $2 --val-every $3 $D --data-licence "$L" --out runs/$1 --install $R >> runs/$1.log 2>&1
}
# step counts fit one working session on the 2-core CPU: about 70 minutes in all (the cards have each run's time)
run lightweight 1500 250
run msia 1500 250
run bgm 600 150
run bgm_excite 750 150
run dcnn 3000 1500

#!/bin/bash
# Train the shipped models with `mattebox train` on the 2-core CPU, one at a time (two at once slowed each ~15x), niced;
# every run resumes where it stopped (run this script again after an interruption).
cd "$(dirname "$0")/.."
D="--data ../shared/data/alphamatting --backgrounds ../shared/data/backgrounds/bsds500/train --val-every 250 --save-every 50 --progress json"
L="alphamatting.com low-res training set (Rhemann et al., CVPR 2009) and BSDS500 train backgrounds (Arbelaez et al., TPAMI 2011): research data, no licence stated by either"
run() {  # model steps
  if grep -q "\"steps\": $2," runs/$1/$1.json 2>/dev/null; then return; fi
  R=""; [ -f runs/$1/checkpoint.safetensors ] && R="--resume"
  nice -n 19 .venv/bin/mattebox train --model $1 --steps $2 $D --data-licence "$L" --out runs/$1 $R >> runs/$1.log 2>&1
}
run lightweight 4000
run msia 4000
run bgm 3000
run bgm_excite 3000
run dcnn 3000

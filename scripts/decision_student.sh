#!/usr/bin/env bash
# The two stages of configs/decision-student.yaml (attempt 1 of a decision-making warm start): 1000 mixed easy +
# one-hop demonstrations for 2000 steps from scratch, then 1500 fresh ones for 800 more steps from that checkpoint
# (the shipped student's second stage was 2000 steps on 3000; at ~1.6x its tokens per step, this recipe's stage 1
# alone took 70 min of the attempt's 2.5 h).
set -euo pipefail
oec=${OEC:-.venv/bin/oec}
tasks=runs/decision-student-tasks
mkdir -p "$tasks"
mix() {  # mix OUT N SEED_EASY SEED_ONEHOP: N/2 easy and N/2 one-hop train tasks, interleaved by shuffling
  local out=$1 half=$(($2 / 2))
  [ -s "$out" ] && return
  "$oec" tasks generate --split train --n "$half" --seed "$3" --preset easy --out "$tasks/easy-$3.jsonl"
  "$oec" tasks generate --split train --n "$half" --seed "$4" --preset multihop --out "$tasks/onehop-$4.jsonl"
  cat "$tasks/easy-$3.jsonl" "$tasks/onehop-$4.jsonl" | shuf --random-source=<(yes) > "$out.tmp" && mv "$out.tmp" "$out"
}
mix "$tasks/stage1.jsonl" 1000 82 83
mix "$tasks/stage2.jsonl" 3000 84 85
"$oec" experiment configs/decision-student.yaml
"$oec" experiment configs/decision-student.yaml name=decision-student-1b suite.warm_file="$tasks/stage2.jsonl" \
    warm_start.trajectories=1500 warm_start.train.max_steps=800 student_model=runs/decision-student-1/warm/ckpt

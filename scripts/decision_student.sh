#!/usr/bin/env bash
# The attempts at a decision-making warm start (configs/decision-student.yaml); attempt 1 (the default): 1000 mixed easy +
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
attempt=${1:-1}
if [ "$attempt" = 1 ]; then
  mix "$tasks/stage1.jsonl" 1000 82 83
  mix "$tasks/stage2.jsonl" 3000 84 85
  "$oec" experiment configs/decision-student.yaml
  "$oec" experiment configs/decision-student.yaml name=decision-student-1b suite.warm_file="$tasks/stage2.jsonl" \
      warm_start.trajectories=1500 warm_start.train.max_steps=800 student_model=runs/decision-student-1/warm/ckpt
elif [ "$attempt" = 2 ]; then
  # attempt 2: from the shipped student (it already copies from the issue text) at lr 2e-4, two stages of 1000
  # steps on 1000 fresh mixed tasks each, so that the attempt is a two-point curve within 2.5 h; the same held-out set
  mix "$tasks/stage2a.jsonl" 1000 86 87
  mix "$tasks/stage2b.jsonl" 1000 88 89
  lr=warm_start.train.learning_rate=2e-4
  "$oec" experiment configs/decision-student.yaml name=decision-student-2a suite.warm_file="$tasks/stage2a.jsonl" \
      student_model=src/oec/assets/warm-student warm_start.train.max_steps=1000 "$lr"
  "$oec" experiment configs/decision-student.yaml name=decision-student-2b suite.warm_file="$tasks/stage2b.jsonl" \
      student_model=runs/decision-student-2a/warm/ckpt warm_start.train.max_steps=1000 "$lr"
elif [ "$attempt" = 3 ]; then
  # attempt 3: attempt 2's start and rate, with the expert's local route (each function found by a grep that shows
  # its body, no module read): attempts 1-2 copied the issue's function but never once a callee out of a `cat`, so
  # here the callee is on the line below the definition the student just found
  mix "$tasks/stage3a.jsonl" 1000 96 97
  mix "$tasks/stage3b.jsonl" 1000 98 99
  local=("expert=scripted:expert?routes=local" warm_start.train.learning_rate=2e-4 warm_start.train.max_steps=1000)
  "$oec" experiment configs/decision-student.yaml name=decision-student-3a suite.warm_file="$tasks/stage3a.jsonl" \
      student_model=src/oec/assets/warm-student "${local[@]}"
  "$oec" experiment configs/decision-student.yaml name=decision-student-3b suite.warm_file="$tasks/stage3b.jsonl" \
      student_model=runs/decision-student-3a/warm/ckpt "${local[@]}"
else
  echo "usage: $0 [1|2|3]" >&2; exit 2
fi

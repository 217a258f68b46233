#!/usr/bin/env bash
# The two runs of configs/claims-easy.yaml, and the calibration that chose its fine-tune.
#   scripts/claims_easy.sh calibrate   # BC alone, two recipes, on 200 held-out tasks of seeds no run uses (~35 min)
#   scripts/claims_easy.sh a           # the config as it is (~2 h)
#   scripts/claims_easy.sh b           # the other arms on the same tasks and warm start (~2 h)
set -euo pipefail
oec=${OEC:-.venv/bin/oec}
config=configs/claims-easy.yaml
case "${1:-}" in
  calibrate)
    # is the fine-tune strong enough to move BC off the warm start? claims-cpu's recipe against a stronger one
    cal=(suite.seed=94 suite.train=100 suite.heldout=200 "arms=[{name: bc, kind: bc}]" seeds=[0] shift=false
         trained_tokens=null recheck_step_limit=null unseen_heldout=0 recheck_arms=null)
    "$oec" experiment "$config" name=finetune-50-1e-4 "${cal[@]}" train.max_steps=50 train.learning_rate=1e-4
    "$oec" experiment "$config" name=finetune-150-3e-4 "${cal[@]}" train.max_steps=150 train.learning_rate=3e-4
    ;;
  a)
    "$oec" experiment "$config"
    ;;
  b)
    "$oec" experiment "$config" name=claims-easy-b shift=false recheck_step_limit=null unseen_heldout=0 \
        recheck_arms=null "arms=[{name: bc, kind: bc}, {name: oec, kind: oec, switch: uniform},
        {name: oec_nofilter, kind: oec, filters: false}, {name: oec_late, kind: oec, switch: late},
        {name: dagger, kind: dagger}]"
    ;;
  *)
    echo "usage: $0 calibrate|a|b" >&2; exit 2
    ;;
esac

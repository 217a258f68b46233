#!/usr/bin/env bash
# configs/claims-easy.yaml in the parts results/claims-easy/ was run in (one part per session's time on 2 cores);
# `oec experiment configs/claims-easy.yaml` alone runs the same experiment in one go.
#   scripts/claims_easy.sh a   # bc, on_policy, oec, oec_all_turns, oec_bc, the rechecks and the shift (~1.5 h)
#   scripts/claims_easy.sh b   # adds oec_nofilter, oec_late and dagger to the same run directory (~1.5 h)
#   scripts/claims_easy.sh c   # C7 again with the switch alone differing: oec and oec_late at the recipe's 150 steps
#                              # each, not token-matched (which gave the late arm 1.4x the steps), in its own run
#                              # directory on the same tasks (~40 min; ~25 with part a's two OEC pools copied in)
#   scripts/claims_easy.sh d   # C8's step confound: DAgger with each round at the recipe's 150 steps (BC's 148), seed 0
#                              # (~20 min); compared with part b's arms on the same held-out tasks
set -euo pipefail
oec=${OEC:-.venv/bin/oec}
config=configs/claims-easy.yaml
case "${1:-}" in
  a)
    "$oec" experiment "$config" name=claims-easy-a "arms=[{name: bc, kind: bc}, {name: on_policy, kind: on_policy},
        {name: oec, kind: oec, switch: uniform}, {name: oec_all_turns, kind: oec, mask: all},
        {name: oec_bc, kind: oec_bc}]"
    ;;
  b)
    "$oec" experiment "$config" name=claims-easy-a
    ;;
  c)
    "$oec" experiment "$config" name=claims-easy-c7 trained_tokens=null shift=false recheck_step_limit=null \
        unseen_heldout=0 recheck_arms=null \
        "arms=[{name: oec, kind: oec, switch: uniform}, {name: oec_late, kind: oec, switch: late}]"
    ;;
  d)
    "$oec" experiment "$config" name=claims-easy-c8 trained_tokens=null shift=false recheck_step_limit=null \
        unseen_heldout=0 recheck_arms=null "seeds=[0]" "arms=[{name: dagger, kind: dagger}]"
    ;;
  *)
    echo "usage: $0 a|b|c|d" >&2; exit 2
    ;;
esac

#!/usr/bin/env bash
# configs/claims-easy.yaml in the two parts results/claims-easy/ was run in (one part per session's time on 2 cores);
# `oec experiment configs/claims-easy.yaml` alone runs the same experiment in one go.
#   scripts/claims_easy.sh a   # bc, on_policy, oec, oec_all_turns, oec_bc, the rechecks and the shift (~1.5 h)
#   scripts/claims_easy.sh b   # adds oec_nofilter, oec_late and dagger to the same run directory (~1.5 h); run it
#                              # from the clone that ran a: a fresh clone retrains the finished arms (results/README.md)
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
  *)
    echo "usage: $0 a|b" >&2; exit 2
    ;;
esac

#!/usr/bin/env bash
# Installs with apt-get, in one go (one `apt-get update`), the system packages whose commands are missing.
# Usage: scripts/apt-tools.sh COMMAND=PACKAGE ...   (COMMAND may be a|b: any of them will do)
# Where apt-get (or sudo) cannot, it says what to install by hand and exits 1; the Makefile goes on regardless.
set -uo pipefail
missing=()
for pair in "$@"; do
  found=
  IFS='|' read -ra commands <<< "${pair%%=*}"
  for c in "${commands[@]}"; do command -v "$c" >/dev/null 2>&1 && found=1; done
  [ -n "$found" ] || missing+=("${pair#*=}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "oec: installing ${missing[*]} with apt-get"
{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"; } \
  >/dev/null 2>&1 || { echo "oec: could not install ${missing[*]}; install them yourself (apt/dnf/brew)" >&2; exit 1; }

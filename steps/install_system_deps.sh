#!/usr/bin/env bash
# Installs the Debian packages that scoring, the demo and some tests use (SCTK, festival and three voices;
# OpenFst's command-line tools, which build G.fst files for the old-LM tests) when we
# are root and apt is available; otherwise prints the command to run. Safe to re-run.
set -u
pkgs="sctk festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k libfst-tools"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null || {
    echo "error: apt-get install$missing failed" >&2; exit 1; }
else
  echo "Missing system packages:$missing" >&2
  echo "Install them with: sudo apt-get install$missing" >&2
  exit 1
fi

#!/usr/bin/env bash
# placer's main job, end to end, on a fresh embedded SQLite store in $DEMO_DIR.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-.demo}
VENV=${VENV:-.venv}
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
export PLACER_STORE="sqlite:///$(cd "$DEMO_DIR" && pwd)/placer.db"
placer="$VENV/bin/placer"

step() { printf '\n== %s\n' "$*"; }

step "create the store and run its migrations"
"$placer" db upgrade
step "what this host offers placer"
"$placer" doctor

#!/usr/bin/env bash
# placer's main job, end to end, on a fresh embedded SQLite store in $DEMO_DIR:
# profile a real program's objects, label them with the slow-tier emulator, rank and plan
# them under a DRAM budget, run the program with the plan bound by the shim, tune an input
# pipeline, and write the reports.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-.demo}
VENV=${VENV:-.venv}
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
export PLACER_STORE="sqlite:///$DEMO_DIR/placer.db"
export PLACER_DATA_DIR="$DEMO_DIR/data"
placer="$VENV/bin/placer"
# PageRank on a Kronecker graph of 2^18 vertices: about a second natively, ~100 MiB of
# objects; the DHAT pass (a few times slower) gives the emulator exact bytes per object.
pr=(examples/bin/pr -g 18 -n 8 -t 2)

step() { printf '\n== %s\n' "$*"; }

step "create the store and run its migrations"
"$placer" db upgrade
step "what this host offers placer"
"$placer" doctor
step "memory tiers of this host"
"$placer" tiers

step "build the example workloads (C, with the project's Makefile)"
make -s -C examples

step "measure this host once: effective cache (pointer-chase sweep), DRAM latency, bandwidth"
# The host model every emulated label, emulate and recommend prices against, kept in the
# store; sysfs's cache size is shown beside the one the pointer chase sees.
"$placer" calibrate --rounds 2

step "profile PageRank's objects (the preloaded shim), then label them (a valgrind DHAT pass + the Optane emulator)"
# experiment --app profiles the program natively, runs it once under DHAT, and stores
# emulated labels: each object's penalty alone in the slow tier, and each baseline's plan
# under DRAM budgets of 30/50/70% of the footprint. stdout is its JSON document.
"$placer" --format json experiment --app pr --budgets 30,50,70 --emulate -- "${pr[@]}" \
  >"$DEMO_DIR/experiment.json"
run=$("$VENV/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["experiments"][0]["run"])' \
  "$DEMO_DIR/experiment.json")
"$placer" objects "$run" --limit 12

step "rank run $run's objects with the shipped model and plan them under a 50% DRAM budget"
"$placer" recommend "$run" --dram-budget 50% -o "$DEMO_DIR/plan.json"

step "what the emulator says that plan costs on Optane (emulated, not measured)"
"$placer" emulate "$run" --tier optane --plan "$DEMO_DIR/plan.json" --limit 8

step "run PageRank with the plan: the shim mbinds each planned allocation (node 0 here)"
"$placer" run --plan "$DEMO_DIR/plan.json" --name pr -- "${pr[@]}"

step "tune an input pipeline: find its bottleneck, then an Optuna study seeded by the analysis"
"$placer" tune tabular-python --trials 6 --trial-seconds 1 -o "$DEMO_DIR/pipeline-config.json"
pipeline=$("$placer" --format json pipelines | "$VENV/bin/python" -c \
  'import json,sys; print(max(p["id"] for p in json.load(sys.stdin)["pipelines"]))')

step "write the reports"
"$placer" report "$run" -o "$DEMO_DIR/report-run.html"
"$placer" report --pipeline "$pipeline" -o "$DEMO_DIR/report-pipeline.html"
"$placer" report --fleet -o "$DEMO_DIR/report-fleet.html"
printf '\nplacement report: %s\npipeline report:  %s\nfleet report:     %s\n' \
  "$DEMO_DIR/report-run.html" "$DEMO_DIR/report-pipeline.html" "$DEMO_DIR/report-fleet.html"

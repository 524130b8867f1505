#!/usr/bin/env bash
# The daemon end to end, on a fresh embedded SQLite store in $DEMO_DIR: start
# `placer daemon`, run a graph job (PageRank under `placer profile`, which registers with
# the daemon) and a training-style pipeline job (examples/pipelines/train_job.py, which
# reports each epoch to the daemon), watch `placer jobs` show decisions, the graph job's
# pages on node 0 in /proc/PID/numa_maps and the daemon's migrations, the pipeline's knobs
# change and its throughput rise; then the fleet report and a clean SIGTERM stop.
# Every wait is bounded; on any failure everything the script started is killed.
set -euo pipefail
DEMO_DIR=${DEMO_DIR:-.demo/daemon}
VENV=${VENV:-.venv}
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
DEMO_DIR=$(cd "$DEMO_DIR" && pwd)
VENV=$(cd "$VENV" && pwd)
export PLACER_STORE="sqlite:///$DEMO_DIR/placer.db"
export PLACER_DATA_DIR="$DEMO_DIR/data"
export PLACER_DAEMON_CONFIG="$DEMO_DIR/daemon.toml"
export PLACER_DAEMON_SOCKET="$DEMO_DIR/daemon.sock"
placer="$VENV/bin/placer"
py="$VENV/bin/python"
# The daemon's settings: a file, as a deployment would have (the socket comes from the
# environment above, which wins over the file). A free metrics port; re-rank each job
# every 2 s (the graph job lives ~15 s); settle a pipeline after 6 told trials.
cat >"$DEMO_DIR/daemon.toml" <<'EOF'
[daemon]
metrics = "127.0.0.1:0"
rank_every = 2.0
tune_trials = 6
EOF
# PageRank on a Kronecker graph of 2^19 vertices (~250 MiB of objects): ~10 s natively.
graph=(examples/bin/pr -g 19 -n 8 -t 2)
# The training job reads 16 batches (32 shards over loopback HTTP, 25 ms per request) per
# epoch; the daemon tunes its fetch parallelism and prefetch. (Decode stays sequential:
# np.load in parallel threads trips a CPython 3.11.7 bug, "AST constructor recursion
# depth mismatch", fixed in 3.11.8.)
pipeline=(-m examples.pipelines.train_job --pipeline remote-torchdata --epochs 10
  --steps-per-epoch 16 --tune parallelism.fetch,prefetch)

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'daemon-demo: %s\n' "$*" >&2; exit 1; }

started=()  # process-group leaders (setsid): the daemon and the two jobs
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${started[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
    fi
  done
  if ((rc != 0)) && [[ -f $DEMO_DIR/daemon.log ]]; then
    printf '\ndaemon log (last lines):\n' >&2
    tail -n 20 "$DEMO_DIR/daemon.log" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS WHAT CMD...: poll CMD every 0.25 s until it succeeds
wait_until() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for $what"
    sleep 0.25
  done
}
# wait_exit SECONDS PID: wait for a background process; its exit status is the return
wait_exit() {
  local limit=$1 pid=$2 deadline
  deadline=$((SECONDS + limit))
  while kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; do
    ((SECONDS < deadline)) || fail "pid $pid still running after ${limit}s"
    sleep 0.25
  done
  wait "$pid"
}
json() { "$py" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
node0_pages() {  # pages on node 0 over all mappings of a process, from numa_maps
  grep -o ' N0=[0-9]*' "/proc/$1/numa_maps" 2>/dev/null | awk -F= '{s += $2} END {print s + 0}'
}

step "build the example programs; create the store"
make -s -C examples
"$placer" db upgrade

step "start the daemon (JSON-lines log: $DEMO_DIR/daemon.log)"
setsid "$placer" daemon --interval 0.5 2>"$DEMO_DIR/daemon.log" &
daemon=$!
started+=("$daemon")
wait_until 30 "the daemon to answer" "$placer" daemon status
"$placer" daemon status

step "start a graph job (${graph[*]} under placer profile) and a training-style pipeline job"
setsid "$placer" profile --sample-period 2 --name pr -- "${graph[@]}" >"$DEMO_DIR/graph.out" 2>&1 &
graph_pid=$!
started+=("$graph_pid")
setsid "$py" "${pipeline[@]}" >"$DEMO_DIR/pipeline.out" 2>&1 &
pipe_pid=$!
started+=("$pipe_pid")
wait_until 30 "the graph job to register" grep -q 'daemon job [0-9]* watches' "$DEMO_DIR/graph.out"
gjob=$(grep -o 'daemon job [0-9]*' "$DEMO_DIR/graph.out" | head -1 | awk '{print $3}')
wait_until 60 "the pipeline job to register" grep -q 'daemon job [0-9]* tunes' "$DEMO_DIR/pipeline.out"
pjob=$(grep -o 'daemon job [0-9]*' "$DEMO_DIR/pipeline.out" | head -1 | awk '{print $3}')
echo "graph job: daemon job $gjob; pipeline job: daemon job $pjob"
program_found() {
  "$placer" --format json job "$gjob" | json 'int(not d["job"].get("waiting_for_program", True))' | grep -qx 1
}
wait_until 30 "the daemon to find the graph program" program_found
gpid=$("$placer" --format json job "$gjob" | json 'd["job"]["pid"]')
echo "graph program: pid $gpid; pages on node 0 now: $(node0_pages "$gpid")"

step "placer jobs, while both run"
for i in 1 2 3; do
  sleep 3
  printf -- '-- after %d s\n' $((3 * i))
  "$placer" jobs
done
migrated() {
  (("$("$placer" --format json job "$gjob" | json 'd["job"]["migrations_total"]')" > 0))
}
wait_until 30 "the daemon's first migration of the graph job" migrated

step "the graph job: its objects by criticality, the daemon's decisions and why"
"$placer" job "$gjob"
if kill -0 "$gpid" 2>/dev/null; then
  echo "pages on node 0 in /proc/$gpid/numa_maps: $(node0_pages "$gpid")" \
    "in $(grep -c ' N0=' "/proc/$gpid/numa_maps" 2>/dev/null || true) mappings"
fi
metrics=$("$placer" --format json daemon status | json 'd["metrics"]')
echo "metrics (http://$metrics/metrics):"
curl -sf "http://$metrics/metrics" | grep -E '^placer_daemon_(migrations_total|pages_on_target_total|decisions_total|samples_ingested_total)' || true

step "wait for both jobs"
wait_exit 120 "$graph_pid" || fail "the graph job failed (see $DEMO_DIR/graph.out)"
tail -n 2 "$DEMO_DIR/graph.out"
wait_exit 120 "$pipe_pid" || fail "the pipeline job failed (see $DEMO_DIR/pipeline.out)"
cat "$DEMO_DIR/pipeline.out"

step "the daemon's migrations of the graph job: pages on node 0 before and after, from numa_maps"
"$py" - "$DEMO_DIR/placer.db" "$gjob" <<'EOF'
import json, sqlite3, sys
db, job = sys.argv[1], int(sys.argv[2])
with sqlite3.connect(db) as c:
    rows = c.execute(
        "SELECT seq, document FROM placer_daemon_events WHERE job_id=? AND kind='migration'"
        " ORDER BY seq", (job,)).fetchall()
print(f"{'#':>3} {'object':8} {'MiB':>6} {'tier':5} {'node':>4} {'pages':>6} {'on node after':>13}"
      f" {'not present':>11} {'moved':>6} {'errors':>14}  numa_maps N0 before -> after")
for seq, doc in rows:
    m = json.loads(doc)
    print(f"{seq:>3} {m['object']:8} {m['size_bytes'] / 2**20:6.1f} {m['tier']:5} {m['node']:>4}"
          f" {m['pages']:>6} {m['after_on_node']:>13} {m['not_present']:>11} {m['moved']:>6}"
          f" {' '.join(f'{k}:{v}' for k, v in m['errors'].items()) or '-':>14}"
          f"  {m['numa_maps_before'].get('0', 0)} -> {m['numa_maps_after'].get('0', 0)}")
print("(EFAULT: a page never written, still the shared zero page; N0 counts are of the"
      " object's mappings)")
if not rows:
    sys.exit("no migration events")
EOF

step "the pipeline job: knob changes, first vs best throughput"
"$placer" job "$pjob"
"$placer" --format json job "$pjob" >"$DEMO_DIR/pipeline-job.json"
"$py" - "$DEMO_DIR/pipeline-job.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["job"]
for c in j["knob_changes"]:
    print(f"  {c['at'][11:19]} {c['knob']}: {c['old']} -> {c['new']} ({c['reason']})")
first, best = j["first_samples_per_second"], j["best"]["samples_per_second"]
print(f"first {first:.0f} samples/s, best {best:.0f} samples/s with {j['best']['knobs']}"
      f" ({best / first:.1f}x)")
if not j["knob_changes"] or not best > first:
    sys.exit("the knobs did not change or the throughput did not rise")
EOF

step "every job the store remembers; the fleet report"
"$placer" jobs --history
"$placer" report --fleet -o "$DEMO_DIR/report-fleet.html"

step "stop the daemon (SIGTERM)"
kill -TERM "$daemon"
rc=0
wait_exit 30 "$daemon" || rc=$?
tail -n 1 "$DEMO_DIR/daemon.log"
((rc == 0)) || fail "the daemon exited with $rc"
[[ ! -e $PLACER_DAEMON_SOCKET ]] || fail "the daemon left its socket behind"
echo "daemon stopped cleanly (exit 0)"
printf '\nfleet report: %s\n' "$DEMO_DIR/report-fleet.html"

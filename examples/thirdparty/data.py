"""Deterministic inputs of the third-party corpus workloads (seeded; same seed, same bytes).

    python examples/thirdparty/data.py [--out DIR] [--seed N]

Writes into ``DIR`` (default ``examples/thirdparty/data/``): ``access.log`` (web-server log
lines: sort, gawk, compression), ``events.json`` (jq), ``shop.sql`` (sqlite3: tables,
inserts, an index, joins and group-bys), ``build.ninja`` (ninja: many targets with trivial
commands), ``tables.lua`` (lua: hash tables and strings), ``redis-kv.sh`` (starts the built
redis-server on a free port, drives it with redis-benchmark, shuts it down). Only the
standard library's ``random.Random`` is used: its output for a given seed is stable across
Python versions, so the files are too. A file already there with the same content is left
alone (``generate`` is cheap to call before every suite run).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"
DEFAULT_SEED = 1
LOG_LINES = 400_000  # ~36 MiB of text
JSON_EVENTS = 150_000
SQL_ORDERS = 150_000
NINJA_TARGETS = 40_000

_HOSTS = [f"10.{a}.{b}.{c}" for a in range(4) for b in range(8) for c in range(1, 33)]
_PATHS = ["/", "/login", "/api/items", "/api/cart", "/static/app.js", "/search", "/img/logo.png"]
_AGENTS = ["curl/8.0", "Mozilla/5.0 (X11; Linux x86_64)", "python-requests/2.31", "Go-http/1.1"]
_WORDS = "alpha beta gamma delta omega sigma kappa lambda theta zeta rho tau phi chi psi".split()


def access_log(rng: random.Random) -> str:
    """Log lines of a web server: host, time, method, path, status, bytes, latency, agent."""
    out = []
    t = 1_700_000_000
    for _ in range(LOG_LINES):
        t += rng.randint(0, 3)
        path = rng.choice(_PATHS)
        if path.startswith("/api"):
            path += f"/{rng.randint(1, 50_000)}"
        status = rng.choices((200, 304, 404, 500), weights=(85, 8, 5, 2))[0]
        out.append(
            f"{rng.choice(_HOSTS)} {t} {rng.choice(('GET', 'GET', 'POST', 'PUT'))} {path} "
            f"{status} {rng.randint(120, 90_000)} {rng.random() * 0.5:.4f} "
            f'"{rng.choice(_AGENTS)}" user{rng.randint(1, 20_000)}\n'
        )
    return "".join(out)


def events_json(rng: random.Random) -> str:
    """One JSON document: an array of nested event objects."""
    events = [
        {
            "id": i,
            "user": f"user{rng.randint(1, 5000)}",
            "kind": rng.choice(("click", "view", "buy", "search")),
            "value": round(rng.random() * 100, 3),
            "tags": rng.sample(_WORDS, rng.randint(0, 4)),
            "geo": {"lat": round(rng.uniform(-90, 90), 4), "lon": round(rng.uniform(-180, 180), 4)},
        }
        for i in range(JSON_EVENTS)
    ]
    return json.dumps(events, separators=(",", ":")) + "\n"


def shop_sql(rng: random.Random) -> str:
    """A small shop database built and queried in memory: inserts, an index, joins."""
    lines = [
        "PRAGMA cache_size=-200000;",
        "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT, city TEXT);",
        "CREATE TABLE products(id INTEGER PRIMARY KEY, title TEXT, price REAL);",
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INT, product INT, qty INT, "
        "day INT, note TEXT);",
        "BEGIN;",
    ]
    cities = [f"city{i}" for i in range(200)]
    for i in range(1, 20_001):
        lines.append(f"INSERT INTO customers VALUES({i},'cust{i}','{rng.choice(cities)}');")
    for i in range(1, 5001):
        lines.append(
            f"INSERT INTO products VALUES({i},'{' '.join(rng.sample(_WORDS, 3))}',"
            f"{rng.randint(100, 100_000) / 100});"
        )
    for i in range(1, SQL_ORDERS + 1):
        lines.append(
            f"INSERT INTO orders VALUES({i},{rng.randint(1, 20_000)},{rng.randint(1, 5000)},"
            f"{rng.randint(1, 9)},{rng.randint(0, 364)},'{rng.choice(_WORDS)}{i % 97}');"
        )
    lines += [
        "COMMIT;",
        "CREATE INDEX orders_customer ON orders(customer);",
        "CREATE INDEX orders_product ON orders(product, day);",
        "SELECT c.city, count(*), round(sum(o.qty * p.price), 2) FROM orders o "
        "JOIN customers c ON c.id = o.customer JOIN products p ON p.id = o.product "
        "GROUP BY c.city ORDER BY 3 DESC LIMIT 5;",
        "SELECT p.title, sum(o.qty) AS n FROM orders o JOIN products p ON p.id = o.product "
        "WHERE o.day BETWEEN 100 AND 200 GROUP BY p.id ORDER BY n DESC LIMIT 5;",
        "SELECT o.day, count(DISTINCT o.customer) FROM orders o GROUP BY o.day "
        "ORDER BY 2 DESC LIMIT 3;",
        "SELECT count(*) FROM orders a JOIN orders b ON a.customer = b.customer "
        "AND a.product < b.product WHERE a.day < 30;",
        "UPDATE orders SET qty = qty + 1 WHERE note LIKE 'alpha%';",
        "DELETE FROM orders WHERE day % 7 = 3;",
        "SELECT count(*), sum(qty) FROM orders;",
    ]
    return "\n".join(lines) + "\n"


def build_ninja(rng: random.Random) -> str:
    """A build graph of many objects, libraries and programs (run with ``ninja -n``)."""
    lines = [
        "rule cc\n  command = cc -c $in -o $out\n  description = CC $out",
        "rule ar\n  command = ar rcs $out $in",
        "rule link\n  command = cc $in -o $out",
        "rule gen\n  command = touch $out",
    ]
    libs = 200
    per = NINJA_TARGETS // libs
    for lib in range(libs):
        objs = []
        for j in range(per):
            hdrs = " ".join(f"include/h{rng.randint(0, 999)}.h" for _ in range(rng.randint(1, 6)))
            obj = f"obj/lib{lib}/f{j}.o"
            lines.append(f"build {obj}: cc src/lib{lib}/f{j}.c | {hdrs}")
            objs.append(obj)
        lines.append(f"build lib/lib{lib}.a: ar {' '.join(objs)}")
    # sources and headers are generated too, so a dry run (`ninja -n`) plans every edge
    lines.append(f"build {' '.join(f'include/h{i}.h' for i in range(1000))}: gen")
    for lib in range(libs):
        lines.append(f"build {' '.join(f'src/lib{lib}/f{j}.c' for j in range(per))}: gen")
    lines.append(f"build {' '.join(f'src/main{p}.c' for p in range(100))}: gen")
    for prog in range(100):
        deps = sorted({f"lib/lib{rng.randrange(libs)}.a" for _ in range(8)})
        lines.append(f"build bin/p{prog}: link obj/main{prog}.o {' '.join(deps)}")
        lines.append(f"build obj/main{prog}.o: cc src/main{prog}.c")
    lines.append(f"build all: phony {' '.join(f'bin/p{p}' for p in range(100))}")
    lines.append("default all")
    return "\n".join(lines) + "\n"


def tables_lua(rng: random.Random) -> str:
    """Hash tables, arrays of records, string building and a sort, in Lua."""
    seed = rng.randint(1, 2**31 - 1)
    return f"""-- generated by examples/thirdparty/data.py (seed-derived constant {seed})
math.randomseed({seed})
local words = {{}}
for i = 1, 200000 do
  words[i] = string.format("w%x_%d", math.random(1, 1 << 30), i % 977)
end
local counts = {{}}
for round = 1, 6 do
  for i = 1, #words do
    local w = words[math.random(1, #words)]
    counts[w] = (counts[w] or 0) + round
  end
end
local recs = {{}}
for k, v in pairs(counts) do recs[#recs + 1] = {{key = k, n = v, tag = k:sub(1, 4)}} end
table.sort(recs, function(a, b) if a.n ~= b.n then return a.n > b.n end return a.key < b.key end)
local bytag = {{}}
for _, r in ipairs(recs) do
  local t = bytag[r.tag]
  if not t then t = {{}}; bytag[r.tag] = t end
  t[#t + 1] = r.key
end
local parts, total = {{}}, 0
for tag, keys in pairs(bytag) do
  total = total + #keys
  parts[#parts + 1] = tag .. "=" .. #table.concat(keys, ",")
end
print("distinct", #recs, "tags", #parts, "total", total, "top", recs[1].key, recs[1].n)
"""


REDIS_KV = r"""#!/bin/sh
# generated by examples/thirdparty/data.py: an in-memory KV workload on the corpus's own
# redis-server (jemalloc). Starts it on a private unix socket (no TCP port to collide on),
# without persistence; loads and reads keys with redis-benchmark (SET, GET, LPUSH, HSET
# over a key space), prints the server's memory, shuts it down. POSIX sh on purpose: dash
# makes no large allocation, so the profile's program is the server, not the script.
# Usage: redis-kv.sh BIN_DIR [REQUESTS]
set -eu
BIN="${1:?usage: redis-kv.sh BIN_DIR [REQUESTS]}"
N="${2:-200000}"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-kv.XXXXXX")"
SOCK="$DIR/redis.sock"
"$BIN/redis-server" --port 0 --unixsocket "$SOCK" --save '' --appendonly no \
  --daemonize no --loglevel warning --dir "$DIR" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
i=0
while [ "$i" -lt 600 ] && ! "$BIN/redis-cli" -s "$SOCK" ping >/dev/null 2>&1; do
  i=$((i + 1))
  sleep 0.05
done
"$BIN/redis-benchmark" -s "$SOCK" -q -P 32 -c 4 -n "$N" -r 300000 -d 96 \
  -t set,get,lpush,hset >/dev/null
"$BIN/redis-cli" -s "$SOCK" info memory | grep -E '^used_memory_human|^mem_allocator' || true
"$BIN/redis-cli" -s "$SOCK" shutdown nosave >/dev/null 2>&1 || true
wait "$SERVER" 2>/dev/null || true
"""

FILES: dict[str, Callable[[random.Random], str]] = {
    "access.log": access_log,
    "events.json": events_json,
    "shop.sql": shop_sql,
    "build.ninja": build_ninja,
    "tables.lua": tables_lua,
}


def generate(out: Path = DEFAULT_OUT, seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Write every input file into ``out``; returns name → path. Same seed, same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for n, (name, make) in enumerate(sorted(FILES.items())):
        text = make(random.Random(seed * 1000 + n))  # one stream per file: independent sizes
        paths[name] = _write(out / name, text)
    paths["redis-kv.sh"] = _write(out / "redis-kv.sh", REDIS_KV, mode=0o755)
    return paths


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    data = text.encode()
    if not (path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(mode)
        tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = p.parse_args(argv)
    for name, path in generate(args.out, args.seed).items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

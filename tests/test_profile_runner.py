"""Running programs: symbolization, signal forwarding, exit codes, the Python runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from placer.collectors.profile.elf import read_elf
from placer.collectors.profile.symbolize import Symbolizer, _parse_pretty

REPO = Path(__file__).resolve().parent.parent


def _cc(tmp: Path, name: str, src: str, *flags: str) -> Path:
    c = tmp / f"{name}.c"
    c.write_text(textwrap.dedent(src))
    out = tmp / name
    subprocess.run(["cc", "-g", "-O0", *flags, "-o", str(out), str(c)], check=True)
    return out


def test_symbolize_file_line_and_cache(tmp_path: Path) -> None:
    prog = _cc(
        tmp_path,
        "sym",
        """\
        #include <stdlib.h>
        void *grow(size_t n) {
            return malloc(n);
        }
        int main(void) { return grow(1) == 0; }
        """,
    )
    nm = subprocess.run(["nm", str(prog)], capture_output=True, text=True, check=True).stdout
    grow = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" grow"))
    info = read_elf(str(prog))
    assert info is not None and info.build_id and info.interpreter
    cache = tmp_path / "cache"
    # an offset a little into grow(): as a return address it points into lines 2-3
    got = Symbolizer(cache).symbolize(str(prog), info.build_id, [grow + 12])
    frame = got[grow + 12][0]
    assert frame.startswith(str(tmp_path / "sym.c") + ":") and frame.endswith((":2", ":3"))
    assert (cache / f"{info.build_id}.json").exists()
    # the cache answers without addr2line, by build-id
    again = Symbolizer(cache, addr2line="/nonexistent/addr2line")
    assert again.symbolize(str(prog), info.build_id, [grow + 12]) == got
    # each frame keeps its function, from the cache too
    assert again.symbolize_frames(str(prog), info.build_id, [grow + 12])[grow + 12][0] == (
        frame,
        "grow",
    )
    # no debug info at all: module+offset
    bare = Symbolizer(None).symbolize("/nonexistent/libx.so", "", [0x10])
    assert bare == {0x10: ["libx.so+0x10"]}


def test_symbolize_keeps_function_names_and_refreshes_old_caches(tmp_path: Path) -> None:
    out = (
        "0x0000000000001148: xmalloc at /src/xmalloc.c:38\n"
        " (inlined by) main at /src/app.c:12\n"
        "0x00000000000011a0: zmalloc at ??:?\n"
        "0x00000000000011c0: ?? ??:0\n"
    )
    got = _parse_pretty(out, [0x1149, 0x11A1, 0x11C1], 0, "/usr/bin/redis-server")
    assert got == {
        0x1149: [("/src/xmalloc.c:38", "xmalloc"), ("/src/app.c:12", "main")],
        0x11A1: [("redis-server+0x11a1", "zmalloc")],  # symbol table, no line table
    }
    # a cache written before function names were kept is symbolized again
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "abc.json").write_text(json.dumps({"10": ["old.c:1"]}))
    sym = Symbolizer(cache, addr2line="/nonexistent/addr2line")
    assert sym.symbolize_frames("/nonexistent/libx.so", "abc", [0x10]) == {
        0x10: [("libx.so+0x10", "")]
    }
    assert json.loads((cache / "abc.json").read_text()) == {"10": [["libx.so+0x10", ""]]}


def _runner_script(argv: list[str]) -> str:
    return textwrap.dedent(f"""\
        import json, sys
        from placer.collectors.profile.runner import run_program
        r = run_program({argv!r}, dict(__import__('os').environ))
        print(json.dumps({{"status": r.status, "code": r.exit_code, "sig": r.signal_name}}),
              file=sys.stderr)
        """)


def _start_runner(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _runner_script(argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_output_and_exit_code_pass_through() -> None:
    p = _start_runner(["sh", "-c", "echo out; echo err >&2; exit 7"])
    out, err = p.communicate(timeout=60)
    assert out == "out\n"
    assert err.startswith("err\n")
    assert json.loads(err.splitlines()[-1]) == {"status": "failed", "code": 7, "sig": None}


def test_sigint_to_placer_reaches_program() -> None:
    # the program traps SIGINT, says so on stdout and exits 0: proof it was forwarded
    p = _start_runner(
        ["sh", "-c", "trap 'echo got-int; exit 0' INT; echo ready; while :; do sleep 0.05; done"]
    )
    assert p.stdout is not None
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert out == "got-int\n"
    assert json.loads(err.splitlines()[-1])["status"] == "interrupted"


def test_killed_program_status() -> None:
    p = _start_runner(["sh", "-c", "kill -KILL $$"])
    _, err = p.communicate(timeout=60)
    assert json.loads(err.splitlines()[-1]) == {"status": "killed", "code": 137, "sig": "SIGKILL"}


def test_pyrunner_keeps_script_semantics_and_names_buffers(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent("""\
        import sys
        import numpy as np
        def table(n):
            return np.zeros(n)
        emb = table(200_000)
        buf = bytearray(300_000)
        small = np.zeros(10)
        print(sys.argv, __name__, emb.sum())
        sys.exit(3)
        """)
    )
    out = tmp_path / "py.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "placer.collectors.profile.pyrunner",
            "--out",
            str(out),
            "--",
            str(script),
            "a",
            "b",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert proc.stdout == f"[{str(script)!r}, 'a', 'b'] __main__ 0.0\n"
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    # Buffers the script made; the interpreter may hold large ones of its own (a fresh
    # clone's CI saw a `bytes` from the import machinery), which are not the script's.
    mine = [r for r in recs if any(f[0] == str(script) for f in r["tb"])]
    by_type = {r["type"]: r for r in mine}
    assert set(by_type) == {"ndarray", "bytearray"}  # the 80-byte array is below the limit
    assert all(r["size"] >= 64 * 1024 for r in recs)
    assert by_type["ndarray"]["size"] == 1_600_000
    assert by_type["ndarray"]["tb"][:2] == [[str(script), 4], [str(script), 5]]
    assert by_type["bytearray"]["tb"][0] == [str(script), 6]
    assert all(r["t"] <= time.monotonic_ns() for r in recs)


def test_one_launcher_watches_and_says_why_a_program_cannot_start(tmp_path: Path) -> None:
    """run_program is the one launcher (profiles and plan runs): ``watch`` sees the live
    process, and a missing or non-executable program is a one-line InvalidInputError."""
    from placer.act.bind import run_with_plan
    from placer.collectors.profile.runner import run_program
    from placer.errors import InvalidInputError

    seen: list[int] = []

    def watch(proc: subprocess.Popen[bytes]) -> None:
        seen.append(proc.pid)
        proc.wait()

    res = run_program(["sh", "-c", "exit 3"], dict(os.environ), quiet=True, watch=watch)
    assert res.status == "failed" and res.exit_code == 3 and len(seen) == 1
    script = tmp_path / "noexec.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(InvalidInputError, match="permission denied"):
        run_program([str(script)], dict(os.environ), quiet=True)
    # the plan runner launches through it too: same one-line errors
    with pytest.raises(InvalidInputError, match="permission denied"):
        run_with_plan([str(script)], [], quiet=True)
    with pytest.raises(InvalidInputError, match="command not found"):
        run_with_plan([str(tmp_path / "missing")], [], quiet=True)

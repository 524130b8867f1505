"""``file:line`` chains for sites, from DWARF line tables through ``addr2line``.

One ``addr2line -a -p -f -i`` process per module answers all of that module's offsets in
one batch (inlined frames included, innermost first). Answers are cached per build-id in
``<data dir>/symcache/<build-id>.json`` because a binary with the same build-id has the
same line tables, wherever it is installed. Modules without debug info (or missing on
disk) give ``module+0xoffset``, which still tells people where to look.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from placer.collectors.profile.elf import read_elf

_PRETTY = re.compile(r"^(?:\s*\(inlined by\)\s*)?(?:0x[0-9a-f]+:\s*)?(?P<func>.*?) at (?P<loc>.*)$")


def _cache_path(cache_dir: Path | None, build_id: str) -> Path | None:
    if cache_dir is None or not build_id:
        return None
    return cache_dir / f"{build_id}.json"


#: Cache entries: ``{offset hex: [[frame, function], ...]}``. Older caches held bare frame
#: strings; such entries are symbolized again so their function names are filled in.
Frame = tuple[str, str]


def fallback_name(module: str, offset: int) -> str:
    return f"{os.path.basename(module) or '?'}+{offset:#x}"


def _cached(entry: object) -> list[Frame] | None:
    """A cache entry as frames, or None for an old or malformed one (symbolize again)."""
    if not isinstance(entry, list) or not entry:
        return None
    out: list[Frame] = []
    for item in entry:
        if not (
            isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
        ):
            return None
        out.append((item[0], item[1]))
    return out


class Symbolizer:
    """Turns (module, offset) return addresses into ``file:line`` frames.

    ``offset`` is the return address minus the module's load base, as the shim logs it;
    we look up ``offset - 1`` (the call instruction, not the one after it).
    """

    def __init__(self, cache_dir: Path | None = None, addr2line: str | None = None) -> None:
        self.cache_dir = cache_dir
        self.addr2line = addr2line or shutil.which("addr2line")
        self._mem: dict[tuple[str, int], list[Frame]] = {}

    def symbolize(self, module: str, build_id: str, offsets: Iterable[int]) -> dict[int, list[str]]:
        """``{offset: ["file:line", ...]}`` for each offset (innermost inline first)."""
        got = self.symbolize_frames(module, build_id, offsets)
        return {off: [frame for frame, _ in frames] for off, frames in got.items()}

    def symbolize_frames(
        self, module: str, build_id: str, offsets: Iterable[int]
    ) -> dict[int, list[Frame]]:
        """``{offset: [("file:line", "function"), ...]}`` (innermost inline first)."""
        wanted = sorted(set(offsets))
        out: dict[int, list[Frame]] = {}
        cache_file = _cache_path(self.cache_dir, build_id)
        disk: dict[str, object] = {}
        if cache_file is not None and cache_file.exists():
            try:
                disk = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                disk = {}
        missing: list[int] = []
        for off in wanted:
            key = (module, off)
            cached = _cached(disk.get(f"{off:x}"))
            if key in self._mem:
                out[off] = self._mem[key]
            elif cached is not None:
                out[off] = cached
            else:
                missing.append(off)
        if missing:
            found = self._run_addr2line(module, missing)
            for off in missing:
                out[off] = found.get(off) or [(fallback_name(module, off), "")]
                disk[f"{off:x}"] = [list(f) for f in out[off]]
            if cache_file is not None:
                try:
                    cache_file.parent.mkdir(parents=True, exist_ok=True)
                    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
                    tmp.write_text(json.dumps(disk))
                    tmp.replace(cache_file)
                except OSError:
                    pass  # a read-only data dir only costs speed
        for off, frames in out.items():
            self._mem[(module, off)] = frames
        return out

    def _vaddr_base(self, module: str) -> int:
        """Link-time address of the module's load base (non-zero for non-PIE programs)."""

        try:
            info = read_elf(module)
        except Exception:  # noqa: BLE001 - unreadable module: plain offsets
            return 0
        if info is None or info.elf_type != "ET_EXEC":
            return 0
        return info.first_load_vaddr

    def _run_addr2line(self, module: str, offsets: list[int]) -> dict[int, list[Frame]]:
        if not self.addr2line or not os.path.isfile(module):
            return {}
        base = self._vaddr_base(module)
        result: dict[int, list[Frame]] = {}
        for start in range(0, len(offsets), 512):
            batch = offsets[start : start + 512]
            addrs = [f"{_vaddr(off, base):#x}" for off in batch]
            try:
                proc = subprocess.run(
                    [self.addr2line, "-e", module, "-a", "-p", "-f", "-i", "-C", *addrs],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                return result
            if proc.returncode != 0:
                return result
            result.update(_parse_pretty(proc.stdout, batch, base, module))
        return result


def _vaddr(offset: int, base: int) -> int:
    """Link-time address of the call before return address ``offset``.

    The shim logs ``address - load bias``: the link-time address itself for PIE programs,
    shared libraries and non-PIE programs alike (their bias is 0). Offsets below a non-PIE
    program's first segment were taken from its load base instead and get the base added.
    """
    vaddr = offset if offset >= base else base + offset
    return max(vaddr - 1, 0)


def _parse_pretty(
    text: str, offsets: list[int], base: int, module: str = "?"
) -> dict[int, list[Frame]]:
    """Parse ``addr2line -a -p -f -i`` output into (frame, function) per offset.

    A line without a location but with a function (symbol table, no DWARF) gives
    ``module+0xoffset`` with that function; one with neither is dropped.
    """
    by_addr = {_vaddr(off, base): off for off in offsets}
    result: dict[int, list[Frame]] = {}
    current: int | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            head = line.split(":", 1)[0]
            try:
                current = by_addr.get(int(head, 16))
            except ValueError:
                current = None
        if current is None:
            continue
        m = _PRETTY.match(line)
        if not m:
            continue
        loc = m.group("loc").split(" (discriminator", 1)[0].strip()
        func = m.group("func").strip()
        if func == "??":
            func = ""
        if loc.startswith("??") or loc.endswith(":?") or loc.endswith(":0"):
            if not func or current in result:
                continue
            loc = fallback_name(module, current)
        result.setdefault(current, []).append((loc, func))
    return result

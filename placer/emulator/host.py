"""This host's DRAM as a program sees it, measured with the example microbenchmarks.

The emulator applies published slow-tier/DRAM ratios to the time the profiled program spent
on *this* host's DRAM, so it needs this host's DRAM latency (pointer chase), streaming read
and write bandwidth (sequential read/write) and LLC size. Measured once (~2 s) and cached
in the data directory per host; without the example binaries the reference DRAM spec is
used and the result says so.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import subprocess
from pathlib import Path

from placer.config import data_dir
from placer.contracts.examples import example_bin_dir
from placer.emulator.model import HostDram
from placer.tiers.specs import load_spec

_FIELD = re.compile(r"(\w+)=([0-9.]+)")
DEFAULT_LLC = 32 * 1024 * 1024


def llc_bytes(root: str = "/") -> int:
    """Size of the last-level cache of cpu0 from sysfs (largest index), else 32 MiB."""
    base = Path(root) / "sys/devices/system/cpu/cpu0/cache"
    best = 0
    for idx in base.glob("index[0-9]*"):
        try:
            text = (idx / "size").read_text().strip()
        except OSError:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", text)
        if m:
            mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]
            best = max(best, int(m.group(1)) * mult)
    return best or DEFAULT_LLC


def parse_micro_line(text: str) -> dict[str, float]:
    """``name: k=v ...`` line of an example microbenchmark → {k: v} (numbers only)."""
    for line in text.splitlines():
        if ":" in line and "time_s=" in line:
            return {k: float(v) for k, v in _FIELD.findall(line.split(":", 1)[1])}
    raise ValueError("no result line")


def measure(
    bin_dir: Path, *, working_set: str = "128M", repeats: int = 3, quick: bool = False
) -> HostDram:
    """Run chase / seqread / seqwrite ``repeats`` times each; medians of their own timings.

    Medians, not best-of: the emulator charges programs that ran on the same shared host,
    so typical, not ideal, DRAM speed is what their time was made of. ``quick`` (one run
    of each, ~1 s) is what experiments use right before profiling a program, so that the
    constants see the same load as the program.
    """
    if quick:
        repeats = 1

    def run(name: str, key: str, *args: str) -> float:
        values = []
        for _ in range(repeats):
            out = subprocess.run(
                [str(bin_dir / name), "-m", working_set, *args],
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            values.append(parse_micro_line(out.stdout)[key])
        return statistics.median(values)

    passes = "6" if quick else "8"
    when = "just before the run" if quick else f"median of {repeats} runs"
    return HostDram(
        latency_ns=run("chase", "ns_per_access", "-i", "1000000" if quick else "2000000"),
        read_gbps=run("seqread", "gb_per_s", "-i", passes),
        write_gbps=run("seqwrite", "gb_per_s", "-i", passes),
        llc_bytes=llc_bytes(),
        source=f"measured on {platform.node()} ({when}: chase/seqread/seqwrite -m {working_set})",
    )


def mean_host(a: HostDram, b: HostDram) -> HostDram:
    """The mean of two measurements (taken around a run on a shared host)."""
    return HostDram(
        latency_ns=(a.latency_ns + b.latency_ns) / 2,
        read_gbps=(a.read_gbps + b.read_gbps) / 2,
        write_gbps=(a.write_gbps + b.write_gbps) / 2,
        llc_bytes=a.llc_bytes,
        source=f"mean of two measurements around the run; {a.source}",
    )


def measure_now() -> HostDram:
    """A quick measurement right now (experiments), else the cached/reference constants."""
    bins = example_bin_dir(build=False)
    if bins is None or not (bins / "chase").exists():
        return host_dram()
    try:
        return measure(bins, quick=True)
    except (OSError, subprocess.SubprocessError, ValueError):
        return host_dram()


def reference() -> HostDram:
    ref = load_spec("dram")
    return HostDram(
        latency_ns=ref.read_latency_random_ns,
        read_gbps=ref.read_bandwidth_gbps,
        write_gbps=ref.write_bandwidth_gbps,
        llc_bytes=llc_bytes(),
        source="reference DRAM spec (example microbenchmarks not built)",
    )


def host_dram(
    cache_dir: Path | None = None, bin_dir: Path | None = None, refresh: bool = False
) -> HostDram:
    """Cached measurement for this host; measured when missing; reference as last resort."""
    if cache_dir is None:
        cache_dir = data_dir()
    if bin_dir is None:
        bin_dir = example_bin_dir(build=False)
    path = Path(cache_dir) / "host-dram.json"
    key = platform.node()
    if path.exists() and not refresh:
        try:
            doc = json.loads(path.read_text())
            if doc.get("host") == key:
                d = doc["dram"]
                return HostDram(
                    float(d["latency_ns"]),
                    float(d["read_gbps"]),
                    float(d["write_gbps"]),
                    int(d["llc_bytes"]),
                    str(d["source"]),
                )
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if bin_dir is None or not (Path(bin_dir) / "chase").exists():
        return reference()
    try:
        dram = measure(Path(bin_dir))
    except (OSError, subprocess.SubprocessError, ValueError):
        return reference()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"host": key, "dram": dram.to_dict()}, indent=2))
    except OSError:
        pass
    return dram

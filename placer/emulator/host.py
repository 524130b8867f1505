"""The host the emulator prices against: a stored host model, or the reference DRAM spec.

The emulator applies published slow-tier/DRAM ratios to the time a profiled program spent
on this host's DRAM, so it needs this host's DRAM latency, streaming read and write
bandwidth and effective cache size. They come from the host model ``placer calibrate``
measured once and stored (:mod:`placer.contracts.host`), never from numbers measured
around the run being priced: the same profile then gives the same labels whenever they are
computed. ``--reference-dram`` prices against the reference DRAM spec instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from placer.contracts.host import HostIdentity, HostModel, this_host
from placer.emulator.model import HostDram
from placer.store.repository.hosts import check_host_model, host_model_by_id, require_host_model
from placer.tiers.specs import load_spec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: The cache the reference spec assumes (an AMD EPYC's 32 MiB L3 slice of our hosts).
DEFAULT_LLC = 32 * 1024 * 1024


def reference() -> HostDram:
    """The reference DRAM spec (tiers/specs/dram.toml), the same on every host."""
    ref = load_spec("dram")
    return HostDram(
        latency_ns=ref.read_latency_random_ns,
        read_gbps=ref.read_bandwidth_gbps,
        write_gbps=ref.write_bandwidth_gbps,
        llc_bytes=DEFAULT_LLC,
        source="reference DRAM spec",
    )


def from_model(row_id: int, model: HostModel) -> HostDram:
    """The emulator's view of a stored host model."""
    return HostDram(
        latency_ns=model.dram_latency_ns,
        read_gbps=model.read_bandwidth_gbps,
        write_gbps=model.write_bandwidth_gbps,
        llc_bytes=model.effective_cache_bytes,
        source=f"host model {row_id} of {model.identity.hostname} "
        f"(measured by placer calibrate, fingerprint {model.fingerprint()})",
        host_model_id=row_id,
        host_model_fingerprint=model.fingerprint(),
    )


def stored(
    session: Session, model_id: int | None = None, identity: HostIdentity | None = None
) -> HostDram:
    """This host's stored model (or model ``model_id``, which must be this host's)."""
    identity = identity or this_host()
    if model_id is None:
        row = require_host_model(session, identity)
    else:
        row = host_model_by_id(session, model_id)
        check_host_model(row, identity, f"host model {model_id}")
    return from_model(row.id, HostModel.from_dict(row.model))

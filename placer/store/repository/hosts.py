"""Hosts and their host models.

Get-or-create is race-free
(``INSERT ... ON CONFLICT DO NOTHING``, then read), so parallel profilers on one
PostgreSQL store never lose a run to a unique-key collision.
"""

from __future__ import annotations

import os
import platform

from sqlalchemy import select
from sqlalchemy.orm import Session

from placer.contracts.host import HostIdentity, HostModel
from placer.errors import InvalidInputError, NotFoundError
from placer.store.models import Host, HostModelRow
from placer.store.repository.common import insert_ignore


# ------------------------------------------------------------------------------- hosts
def host_row(session: Session, hostname: str | None = None) -> Host:
    """This host's row (created on first use)."""
    name = hostname or platform.node() or "localhost"
    host = session.scalar(select(Host).where(Host.hostname == name))
    if host is not None:
        return host
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    insert_ignore(
        session,
        Host,
        [
            {
                "hostname": name,
                "cpus": os.cpu_count() or 1,
                "memory_bytes": mem,
                "kernel": platform.release(),
            }
        ],
        ["hostname"],
    )
    host = session.scalar(select(Host).where(Host.hostname == name))
    assert host is not None
    return host


def hostnames(session: Session) -> dict[int, str]:
    """Every host's name by its id (reports name the host of each row)."""
    return {h.id: h.hostname for h in session.scalars(select(Host))}


def hostname_of(session: Session, host_id: int | None) -> str | None:
    """The name of host ``host_id``; None when there is none."""
    if host_id is None:
        return None
    host = session.get(Host, host_id)
    return host.hostname if host is not None else None


# ------------------------------------------------------------------------- host models
def save_host_model(session: Session, model: HostModel) -> HostModelRow:
    """Store ``model`` for its host; an identical model already stored is returned as is."""
    fingerprint = model.fingerprint()
    row = session.scalar(select(HostModelRow).where(HostModelRow.fingerprint == fingerprint))
    if row is not None:
        return row
    host = host_row(session, model.identity.hostname)
    row = HostModelRow(
        host_id=host.id,
        host_fingerprint=model.identity.fingerprint(),
        fingerprint=fingerprint,
        effective_cache_bytes=model.effective_cache_bytes,
        dram_latency_ns=model.dram_latency_ns,
        read_gbps=model.read_bandwidth_gbps,
        write_gbps=model.write_bandwidth_gbps,
        spread=model.spread,
        model=model.to_dict(),
    )
    session.add(row)
    session.flush()
    return row


def host_model_by_id(session: Session, model_id: int) -> HostModelRow:
    row = session.get(HostModelRow, model_id)
    if row is None:
        raise NotFoundError(f"no host model {model_id} in the store")
    return row


def current_host_model(session: Session, identity: HostIdentity) -> HostModelRow | None:
    """The newest model measured on the host ``identity`` names, else None."""
    stmt = (
        select(HostModelRow)
        .where(HostModelRow.host_fingerprint == identity.fingerprint())
        .order_by(HostModelRow.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def require_host_model(session: Session, identity: HostIdentity) -> HostModelRow:
    """The host's current model, or a one-line error that says how to make one."""
    row = current_host_model(session, identity)
    if row is not None:
        return row
    other = session.scalar(
        select(HostModelRow)
        .join(Host, Host.id == HostModelRow.host_id)
        .where(Host.hostname == identity.hostname)
        .limit(1)
    )
    if other is not None:
        raise InvalidInputError(
            f"the stored host model {other.id} was measured on another machine named "
            f"{identity.hostname} (its CPUs, memory or cache differ): run `placer calibrate`"
        )
    raise NotFoundError(
        f"no host model for {identity.hostname} in the store: run `placer calibrate` first"
    )


def check_host_model(row: HostModelRow, identity: HostIdentity, what: str) -> None:
    """Refuse to use a model measured on another host (one line, exit 2)."""
    if row.host_fingerprint != identity.fingerprint():
        hostname = HostModel.from_dict(row.model).identity.hostname
        raise InvalidInputError(
            f"{what} uses host model {row.id}, measured on {hostname}, not on this host "
            f"({identity.hostname}): run `placer calibrate` here and compute it again"
        )

"""Daemon settings: a TOML file plus ``PLACER_DAEMON_*`` environment variables.

Precedence: command line over environment over file over defaults, so a systemd drop-in
or a shell can override one setting without editing the file. SIGHUP re-reads the file
and the environment and applies the command line's values again (``overrides``); a value
that does not read (a size, a number, a budget) is refused at start (one line, exit 2) and
on a reload (the old config stays).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placer.config import data_dir
from placer.contracts.units import parse_budget_spec
from placer.errors import ConfigError, PlacerError

CONFIG_ENV = "PLACER_DAEMON_CONFIG"
SOCKET_ENV = "PLACER_DAEMON_SOCKET"


def default_socket() -> Path:
    """``$XDG_RUNTIME_DIR/placer/daemon.sock`` when there is one, else in the data dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "placer" / "daemon.sock"
    return data_dir() / "daemon.sock"


def service_socket() -> Path:
    """Where the daemon listens by default: systemd's RuntimeDirectory when it set one.

    Only the daemon looks at ``$RUNTIME_DIRECTORY``: a client started by another unit has
    that unit's directory there. For a user unit both are ``$XDG_RUNTIME_DIR/placer``.
    """
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "daemon.sock"
    return default_socket()


def default_config_file() -> Path:
    return data_dir() / "daemon.toml"


@dataclass
class DaemonConfig:
    """Every setting of the daemon (docs/daemon.md lists them with their variables)."""

    socket: str = ""  # "" = service_socket()
    interval: float = 1.0  # seconds between loop ticks
    rank_every: float = 5.0  # seconds between re-rankings of one job
    dram_budget: str = "50%"  # DRAM share of a job's live footprint (or bytes)
    migrate_mb_per_s: float = 256.0  # page-migration rate limit, all jobs together
    migrate: bool = True  # act on decisions with move_pages (False: decide only)
    buffer_max: int = 200_000  # pending rows kept in memory while the store is away
    batch_max: int = 20_000  # rows written per store transaction
    store_timeout: float = 2.0  # seconds one store call may wait for a lock / connect
    metrics: str = "127.0.0.1:9464"  # host:port for Prometheus; "" turns it off
    tune_trials: int = 8  # ask-and-tell trials per pipeline job before settling
    perf: bool = True  # perf software counters per job (falls back to /proc)
    log_level: str = "info"

    @classmethod
    def fields(cls) -> dict[str, Any]:
        return {f.name: f for f in dataclasses.fields(cls)}

    def socket_path(self) -> Path:
        return Path(self.socket).expanduser() if self.socket else service_socket()

    def metrics_address(self) -> tuple[str, int] | None:
        if not self.metrics:
            return None
        host, _, port = self.metrics.rpartition(":")
        try:
            number = int(port)
        except ValueError:
            raise ConfigError(f"daemon metrics address {self.metrics!r} is not HOST:PORT") from None
        if not 0 <= number <= 65535:  # 0: any free port
            raise ConfigError(f"daemon metrics port {number} is not in 0..65535")
        return (host or "127.0.0.1").strip("[]"), number

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["socket"] = str(self.socket_path())
        return d


def _coerce(name: str, value: Any, default: Any, where: str) -> Any:
    if name == "dram_budget":
        try:
            parse_budget_spec(str(value), "DRAM budget")
        except PlacerError as exc:
            raise ConfigError(f"{where}: dram_budget = {value!r}: {exc}") from None
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where}: {name} = {value!r} is not a valid {type(default).__name__}"
        ) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> DaemonConfig:
    """Defaults, then the TOML file (``[daemon]`` table or top level), then the environment,
    then ``overrides`` (the command line's flags), each value checked."""
    env = dict(os.environ if environ is None else environ)
    explicit = path is not None or CONFIG_ENV in env
    file = Path(path if path is not None else env.get(CONFIG_ENV) or default_config_file())
    base = DaemonConfig()
    values: dict[str, Any] = {}
    fields = DaemonConfig.fields()
    if file.exists():
        try:
            doc = tomllib.loads(file.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read daemon config {file}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"daemon config {file}: {exc}") from None
        table = doc.get("daemon", doc)
        if not isinstance(table, dict):
            raise ConfigError(f"daemon config {file}: [daemon] must be a table")
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"daemon config {file}: unknown setting {key!r}")
            values[name] = _coerce(name, value, getattr(base, name), str(file))
    elif explicit:
        raise ConfigError(f"daemon config {file} does not exist")
    for name in fields:
        var = f"PLACER_DAEMON_{name.upper()}"
        if var in env and var != CONFIG_ENV:
            values[name] = _coerce(name, env[var], getattr(base, name), var)
    for name, value in (overrides or {}).items():
        flag = "--" + name.replace("_", "-")
        values[name] = _coerce(name, value, getattr(base, name), flag)
    cfg = dataclasses.replace(base, **values)
    if not 0 < cfg.interval <= 3600:
        raise ConfigError(f"daemon interval must be in (0, 3600] seconds, got {cfg.interval}")
    if cfg.buffer_max < 1 or cfg.batch_max < 1:
        raise ConfigError("daemon buffer_max and batch_max must be at least 1")
    if not 0 < cfg.migrate_mb_per_s < math.inf:
        raise ConfigError("daemon migrate_mb_per_s must be a positive number")
    if not 0 <= cfg.rank_every < math.inf or not 0 < cfg.store_timeout < math.inf:
        raise ConfigError("daemon rank_every and store_timeout must be finite, store_timeout > 0")
    cfg.metrics_address()
    return cfg

"""What every command handler receives: the resolved global options and output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from placer.config import resolve_store_url


@dataclass
class Context:
    store_url: str
    format: str
    debug: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        return cls(
            store_url=resolve_store_url(getattr(args, "store", None)),
            format=getattr(args, "format", "table"),
            debug=bool(getattr(args, "debug", False)),
        )

    def open_store(
        self, *, create: bool = True, migrate: bool = True, create_dirs: bool = False
    ) -> Any:
        """The store; by default created and migrated to head, as data commands need."""
        # lazy: heavy (the store is sqlalchemy); `placer --help` must not pay for it
        from placer.store import Store

        store = Store(self.store_url, create=create, create_dirs=create_dirs)
        if migrate:
            store.ensure_schema()
        return store

    # -- output ------------------------------------------------------------------------
    def emit(self, document: dict[str, Any], render: Callable[[dict[str, Any]], None]) -> None:
        """Print ``document`` as JSON, or let ``render`` draw it for people."""
        if self.format == "json":
            json.dump(document, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            render(document)

    @staticmethod
    def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        from rich.console import Console  # lazy: heavy
        from rich.table import Table  # lazy: heavy

        table = Table(title=title, show_lines=False, header_style="bold")
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console(soft_wrap=False).print(table)

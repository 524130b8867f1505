"""``placer db``: create, migrate and inspect the store's schema."""

from __future__ import annotations

import argparse
from typing import Any

from placer.cli.context import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    db = sub.add_parser("db", parents=[common])
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db_sub.required = True

    init = db_sub.add_parser(
        "init",
        help="create the store, its directory included, and migrate it to head",
        description="Create the store named by --store / $PLACER_STORE (for SQLite: the "
        "file and any missing directories) and migrate it to head. Other commands create "
        "a new SQLite file only in an existing directory, so a typo in a URL is an error "
        "rather than a new, empty history; the default store in the data directory is "
        "always created.",
        parents=[common],
    )
    init.set_defaults(handler=_init)

    up = db_sub.add_parser("upgrade", help="create the store / migrate it", parents=[common])
    up.add_argument("revision", nargs="?", default="head", help="target revision (head)")
    up.set_defaults(handler=_upgrade)

    down = db_sub.add_parser("downgrade", help="migrate the store down", parents=[common])
    down.add_argument("revision", help="target revision ('base' removes placer's tables)")
    down.set_defaults(handler=_downgrade)

    cur = db_sub.add_parser("current", help="show the store's schema revision", parents=[common])
    cur.set_defaults(handler=_current)


def _status(ctx: Context, store: Any) -> dict[str, Any]:
    current = store.current_revision()
    head = store.head_revision()
    return {
        "store": store.display_url,
        "dialect": store.dialect,
        "current": current,
        "head": head,
        "at_head": current == head,
    }


def _print_status(doc: dict[str, Any]) -> None:
    state = "head" if doc["at_head"] else f"head is {doc['head']}"
    print(f"store:    {doc['store']}")
    print(f"revision: {doc['current'] or 'none (no placer schema)'} ({state})")


def _init(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=True, migrate=False, create_dirs=True) as store:
        store.upgrade("head")
        ctx.emit(_status(ctx, store), _print_status)
    return 0


def _upgrade(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=True, migrate=False) as store:
        store.upgrade(args.revision)
        ctx.emit(_status(ctx, store), _print_status)
    return 0


def _downgrade(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=False, migrate=False) as store:
        store.downgrade(args.revision)
        ctx.emit(_status(ctx, store), _print_status)
    return 0


def _current(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.open_store(create=False, migrate=False) as store:
        ctx.emit(_status(ctx, store), _print_status)
    return 0

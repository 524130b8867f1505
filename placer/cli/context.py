"""What every command handler receives: the resolved global options and output helpers."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from placer.config import resolve_store_url
from placer.errors import ConfigError


@dataclass
class Context:
    store_url: str
    format: str
    debug: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        store = getattr(args, "store", None)
        if store is not None and not store.strip():
            # an empty --store (an unset shell variable) must not mean the default store
            raise ConfigError("--store is empty: give a store URL, or leave --store out")
        return cls(
            store_url=resolve_store_url(store),
            format=getattr(args, "format", "table"),
            debug=bool(getattr(args, "debug", False)),
        )

    def open_store(
        self, *, create: bool = True, migrate: bool = True, create_dirs: bool = False
    ) -> Any:
        """The store; by default created and migrated to head, as data commands need.

        Commands that only read pass ``create=False``: a store that does not exist yet
        (often a typo in ``--store``) is one line and exit 2, and nothing is created.
        """
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

    def live(self) -> bool:
        """Whether progress may be drawn: a person watches stderr and no JSON is wanted."""
        return self.format != "json" and sys.stderr.isatty()

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner with ``text`` and the elapsed time on stderr while a long step runs.

        Only on a terminal and never with ``--format json``; the line is removed when the
        step ends, so what the step prints afterwards reads as before.
        """
        if not self.live():
            yield
            return
        from rich.console import Console  # lazy: heavy
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            progress.add_task(text, total=None)
            yield

    @staticmethod
    def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Print a table that fits the terminal (else ``$COLUMNS``, else 80 columns).

        Cells never wrap: long text is cut with an ellipsis, numbers and dates never are,
        headers break between words; a table too wide even so is printed in blocks of
        columns, each led by the first column. On a terminal rich draws it; piped, it is
        plain aligned text (no colors, no box), so ``placer objects 1 | cat`` reads well.
        """
        cells = [["" if v is None else str(v) for v in row] for row in rows]
        width = shutil.get_terminal_size().columns
        for n, block in enumerate(fit_columns(columns, cells, width)):
            heads = [columns[i] for i in block.index]
            body = [[row[i] if i < len(row) else "" for i in block.index] for row in cells]
            name = title if n == 0 else None
            if sys.stdout.isatty():
                _rich_table(name, heads, body, block)
            else:
                sys.stdout.write(plain_table(name, heads, body, block, width))


#: Spaces between two columns, in both renderings.
GAP = 2
#: A text column is cut no narrower than this (or its header) before headers are cut too.
MIN_TEXT = 10
#: When a table is split into blocks, a text column gets this much room where it can.
ROOMY_TEXT = 30
#: Cells that say "no value" in a numeric column.
_BLANK = ("", "-", "nan")
_NUMBER = re.compile(
    r"^([-+]?(\d[\d,]*(\.\d*)?|\.\d+)(e[-+]?\d+)?( ?(%|x|s|ms|[KMGT]?i?B))?"
    r"|\d{4}-\d\d-\d\d([ T]\d\d:\d\d(:\d\d)?)?)$"
)


@dataclass
class Layout:
    """One block of a table: which columns (by index), their widths, which are numeric."""

    index: list[int]
    widths: list[int]
    numeric: list[bool]


def _is_numeric(values: Sequence[str]) -> bool:
    """Numbers, sizes, shares and dates: right-aligned and never cut."""
    filled = [v for v in values if v.strip() not in _BLANK]
    return bool(filled) and all(_NUMBER.match(v.strip()) for v in filled)


def _longest_word(header: str) -> int:
    """The narrowest a header can be without cutting a word (as :func:`_header` breaks it)."""
    from rich.cells import cell_len  # lazy: heavy

    return max((cell_len(w) for w in textwrap.wrap(header, 1, break_long_words=False)), default=1)


def _shrink(natural: list[int], floors: list[int], budget: int) -> list[int] | None:
    """Widths within ``budget``, the widest columns giving way first; None if impossible."""
    widths = list(natural)
    while sum(widths) > budget:
        give = [k for k in range(len(widths)) if widths[k] > floors[k]]
        if not give:
            return None
        widths[max(give, key=widths.__getitem__)] -= 1
    return widths


def fit_columns(columns: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[Layout]:
    """Blocks of columns with widths that fit ``width`` (usually one block: the whole table).

    Text columns shrink, widest first, down to their longest header word or ``MIN_TEXT``
    (cells cut with an ellipsis); numeric columns down to their widest value (the header
    breaks between words). A table that does not fit then is split into blocks of columns,
    each repeating the first; only a block of two columns that still does not fit cuts
    headers and text further (to 4 cells).
    """
    from rich.cells import cell_len  # lazy: heavy

    n = len(columns)
    values = [[cell_len(row[i]) for row in rows if i < len(row)] for i in range(n)]
    natural = [max([cell_len(c), *v]) for c, v in zip(columns, values, strict=True)]
    numeric = [_is_numeric([row[i] for row in rows if i < len(row)]) for i in range(n)]
    floor = [
        max([*v, _longest_word(h)]) if num else min(w, max(_longest_word(h), MIN_TEXT))
        for w, v, num, h in zip(natural, values, numeric, columns, strict=True)
    ]
    last = [
        max(v, default=1) if num else min(w, 4)
        for w, v, num in zip(natural, values, numeric, strict=True)
    ]

    def block(index: list[int]) -> Layout:
        budget = width - GAP * (len(index) - 1)
        nat = [natural[i] for i in index]
        widths = _shrink(nat, [floor[i] for i in index], budget)
        widths = widths or _shrink(nat, [last[i] for i in index], budget) or nat
        return Layout(index, widths, [numeric[i] for i in index])

    if sum(floor) + GAP * (n - 1) <= width or n <= 2:
        return [block(list(range(n)))]
    # too wide: columns without a value go first, then blocks that leave text some room
    keep = [i for i in range(n) if i == 0 or any(r[i].strip() for r in rows if i < len(r))]
    if sum(floor[i] for i in keep) + GAP * (len(keep) - 1) <= width:
        return [block(keep)]
    want = [
        f if num else min(w, max(f, ROOMY_TEXT))
        for w, f, num in zip(natural, floor, numeric, strict=True)
    ]
    groups = [[0]]
    for i in keep[1:]:
        group = groups[-1]
        if len(group) > 1 and sum(want[k] for k in [*group, i]) + GAP * len(group) > width:
            groups.append([0])
        groups[-1].append(i)
    return [block(g) for g in groups]


def _header(text: str, width: int) -> list[str]:
    """A header in lines of ``width``, broken between words (and after hyphens)."""
    lines = textwrap.wrap(text, width, break_long_words=False) or [""]
    return [_cut(line, width) for line in lines]


def _cut(text: str, width: int) -> str:
    from rich.cells import cell_len, set_cell_size  # lazy: heavy

    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    from rich.cells import cell_len  # lazy: heavy

    fill = " " * (width - cell_len(text))
    return fill + text if right else text + fill


def plain_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    layout: Layout,
    width: int,
) -> str:
    """The table as plain text: title, header, a rule, one line per row, no colors."""
    lines = textwrap.wrap(title, width) if title else []

    def line(cells: Sequence[str]) -> str:
        parts = [
            _pad(_cut(c, w), w, num)
            for c, w, num in zip(cells, layout.widths, layout.numeric, strict=False)
        ]
        return (" " * GAP).join(parts).rstrip()

    heads = [_header(c, w) for c, w in zip(columns, layout.widths, strict=True)]
    depth = max(len(h) for h in heads)
    for k in range(depth):
        # headers sit on the rule: a short one on the last line, as rich draws it
        lines.append(line([h[k - depth + len(h)] if k >= depth - len(h) else "" for h in heads]))
    lines.append((" " * GAP).join("-" * w for w in layout.widths))
    lines.extend(line(row) for row in rows)
    return "\n".join(lines) + "\n"


def _rich_table(
    title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]], layout: Layout
) -> None:
    from rich import box  # lazy: heavy
    from rich.console import Console  # lazy: heavy
    from rich.table import Table  # lazy: heavy
    from rich.text import Text  # lazy: heavy

    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, GAP - 1, 0, 0),
        header_style="bold",
    )
    for col, w, num in zip(columns, layout.widths, layout.numeric, strict=True):
        table.add_column(
            "\n".join(_header(col, w)),
            width=w,
            no_wrap=True,
            overflow="ellipsis",
            justify="right" if num else "left",
            vertical="bottom",
        )
    for row in rows:
        table.add_row(*(Text(_cut(c, w)) for c, w in zip(row, layout.widths, strict=False)))
    width = sum(layout.widths) + GAP * (len(columns) - 1)
    console = Console(soft_wrap=False)
    console.print(table, width=max(width, console.width))


class WrappingWriter:
    """stdout on a terminal: lines of prose wrap between words at the terminal's width.

    A long line printed whole would be cut by the terminal in the middle of a word. This
    wraps such lines at spaces (a word longer than the width, a path say, stays whole) and
    indents the continuation under the line's own indent plus two. Lines with escape codes
    (rich's tables, already fitted) pass through, and so does everything when stdout is not
    a terminal or the output is JSON: piped text stays one record per line.
    """

    def __init__(self, target: Any, width: int) -> None:
        self._target = target
        self._width = max(width, 20)
        self._pending = ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._target.write(wrap_line(line, self._width) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._target.write(wrap_line(self._pending, self._width))
            self._pending = ""
        self._target.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding: the terminal's
        return getattr(self._target, name)


def wrap_line(line: str, width: int) -> str:
    """``line`` wrapped between words at ``width``; unchanged when it fits or has escapes."""
    if len(line) <= width or "\x1b" in line:
        return line
    indent = line[: len(line) - len(line.lstrip(" "))]
    return textwrap.fill(
        line.strip(" "),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


@contextlib.contextmanager
def wrapped_stdout(ctx: Context) -> Iterator[None]:
    """Wrap prose on a terminal (not in JSON mode) for the duration of a command."""
    if ctx.format == "json" or not sys.stdout.isatty():
        yield
        return
    original = sys.stdout
    writer = WrappingWriter(original, shutil.get_terminal_size().columns)
    sys.stdout = writer  # type: ignore[assignment,unused-ignore]
    try:
        yield
    finally:
        writer.flush()
        sys.stdout = original

"""The CLI reads well: tables fit 80 columns and stay plain when piped; every option and
argument has help; ``tune --help`` names the pipelines; progress only where it belongs."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path

import pytest

from placer import cli
from placer.cli.context import Context, fit_columns, plain_table
from tests.placement_store import make_corpus

CHAIN = "graph.c:186 ← graph.c:477 ← pr.c:65 ← main ← __libc_start_call_main"


def _table(capsys: pytest.CaptureFixture[str], *args: object) -> list[str]:
    Context.table(*args)  # type: ignore[arg-type]
    return capsys.readouterr().out.splitlines()


def test_piped_table_cuts_long_cells_instead_of_wrapping(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    cols = ["obj", "site", "size", "life s", "density", "over time", "writes", "faults"]
    rows = [[5, CHAIN, "2.0 MiB", "0.02", "1.00", " ██▁▁", "100%", 511]] * 3
    lines = _table(capsys, "run 1 (pr): 3 of 3 objects", cols, rows)
    assert len(lines) == 1 + 1 + 1 + 3  # title, header, rule, one line per row
    assert all(len(line) <= 80 for line in lines)
    assert lines[1].split() == [
        "obj",
        "site",
        "size",
        "life",
        "s",
        "density",
        "over",
        "time",
        "writes",
        "faults",
    ]  # no header split inside a word
    assert "\x1b[" not in "".join(lines)  # no colors when piped
    assert "│" not in "".join(lines) and "┃" not in "".join(lines)
    row = lines[3]
    assert "graph.c:186 ←" in row and "…" in row and "__libc_start_call_main" not in row
    assert row.rstrip().endswith("511") and " 2.0 MiB" in row  # numbers whole, right-aligned


def test_numbers_and_dates_are_never_cut(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    cols = ["run", "app", "status", "exit", "wall s", "objects", "started", "command"]
    row = [1, "pr", "succeeded", 0, "1.11", 14, "2026-12-05T17:12:18", "x" * 60]
    (line,) = _table(capsys, None, cols, [row])[2:]
    assert "2026-12-05T17:12:18" in line and len(line) <= 80


def test_a_table_too_wide_for_the_width_is_printed_in_blocks() -> None:
    cols = ["app", *(f"strategy-{i}" for i in range(12))]
    rows = [["app0", *(f"{1 + i / 1000:.4f}" for i in range(12))]]
    blocks = fit_columns(cols, rows, 80)
    assert len(blocks) > 1 and all(b.index[0] == 0 for b in blocks)  # key column repeated
    assert sorted({i for b in blocks for i in b.index}) == list(range(13))
    for b in blocks:
        text = plain_table(None, [cols[i] for i in b.index], [[rows[0][i] for i in b.index]], b, 80)
        assert all(len(line) <= 80 for line in text.splitlines())
        assert "1.0" in text and "…" not in text


def test_terminal_table_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(out, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    Context.table("objects", ["obj", "site", "density"], [[1, CHAIN * 2, "0.50"]])
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()
    assert len(lines) == 4 and all(len(line) <= 80 for line in lines)
    assert "graph.c:186 ←" in lines[3] and "…" in lines[3]


@pytest.fixture
def corpus_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'c.db'}"
    make_corpus(url, apps=3, runs_per_app=2, n=10, seed=5)
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "80")

    def run(*args: str) -> str:
        capsys.readouterr()
        assert cli.main(["--store", url, *args]) == 0
        return capsys.readouterr().out

    return run


@pytest.mark.parametrize(
    "args",
    [
        ["runs"],
        ["objects", "1"],
        ["recommend", "1", "--dram-budget", "50%"],
        ["evaluate", "--budgets", "30,50"],
        ["tiers"],
        ["pipelines"],
        ["jobs", "--history"],
    ],
)
def test_every_table_fits_80_columns_when_piped(corpus_cli, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    out = corpus_cli(*args)
    rules = [ln for ln in out.splitlines() if ln and set(ln) <= {"-", " "}]
    assert rules, out  # at least one table
    assert "│" not in out and "┃" not in out  # plain text when piped: no box, no colors
    for ln in out.splitlines():
        if set(ln) <= {"-", " "} or "  " in ln:
            assert len(ln) <= 80, ln  # table lines (prose lines are the terminal's to wrap)


@pytest.mark.parametrize(("args", "key"), [(["runs"], "runs"), (["objects", "1"], "objects")])
def test_one_line_per_row_when_piped(corpus_cli, args: list[str], key: str) -> None:  # type: ignore[no-untyped-def]
    """`placer objects 1 | cat` once wrapped one call site over 8 lines."""
    rows = len(json.loads(corpus_cli("--format", "json", *args))[key])
    lines = corpus_cli(*args).splitlines()
    rule = next(i for i, ln in enumerate(lines) if set(ln) <= {"-", " "})
    assert rows > 0 and len(lines) - rule - 1 == rows


def test_every_option_and_argument_has_help() -> None:
    """Walks the whole parser tree: `attach PID`, `evaluate --tier` had none."""
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    for name in cli.COMMANDS:
        parser = cli.build_parser(name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        walk(sub.choices[name], f"placer {name}")
    assert not missing, "without help text: " + ", ".join(sorted(set(missing)))


def test_tune_help_lists_the_pipelines(capsys: pytest.CaptureFixture[str]) -> None:
    from placer.collectors.pipeline.registry import example_names

    with pytest.raises(SystemExit):
        cli.main(["tune", "--help"])
    out = capsys.readouterr().out
    names = example_names()
    assert names and all(f" {n} " in f" {' '.join(out.split())} " for n in names)


def test_progress_only_on_a_terminal_and_never_for_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert Context("sqlite://", "table", False).live()
    assert not Context("sqlite://", "json", False).live()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not Context("sqlite://", "table", False).live()
    with Context("sqlite://", "table", False).status("quiet"):
        pass


def test_empty_columns_give_way_before_a_table_is_split() -> None:
    cols = [
        "obj",
        "site",
        "size",
        "life s",
        "density",
        "over time",
        "writes",
        "faults",
        "dhat read",
        "dhat written",
    ]
    row = ["1", CHAIN, "1.0 MiB", "0.03", "", "   ", "", "256", "2.5 MiB", "1.0 MiB"]
    (block,) = fit_columns(cols, [row], 80)
    assert [cols[i] for i in block.index] == [
        "obj",
        "site",
        "size",
        "life s",
        "faults",
        "dhat read",
        "dhat written",
    ]
    assert block.widths[1] >= 20  # the call site keeps room to be read

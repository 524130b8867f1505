"""``placer report`` as users run it: files, formats, errors, nothing half-written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.report_fixtures import EVIL, open_store, seed_daemon, seed_pipeline, seed_run


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'seeded.db'}"
    st = open_store(url)
    seed_run(st, evil=True)
    seed_pipeline(st, optuna_trials=False)
    seed_daemon(st)
    st.dispose()
    return url


@pytest.mark.slow
def test_each_kind_writes_its_file_and_prints_the_path(run_placer, seeded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for args, name in ((["1"], "r.html"), (["--pipeline", "1"], "p.md"), (["--fleet"], "f.json")):
        out = tmp_path / name
        res = run_placer("--store", seeded, "report", *args, "-o", str(out))
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == str(out)
        assert out.stat().st_size > 0
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert (tmp_path / "p.md").read_text().startswith("# Pipeline report: images")
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["report"] == "fleet" and doc["format_version"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_json_twin_on_stdout_matches_the_documented_shape(run_placer, seeded) -> None:  # type: ignore[no-untyped-def]
    res = run_placer("--store", seeded, "report", "1", "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)  # strict JSON: no NaN
    assert doc["report"] == "run" and doc["run"]["id"] == 1
    for key in ("objects", "heatmap", "budget_curve", "plan"):
        assert "available" in doc[key]
    # Strings from programs stay raw in JSON; escaping is the renderer's job.
    assert any(r["site"]["location"] == EVIL for r in doc["objects"]["rows"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["99"], "run 99 not found"),
        (["--pipeline", "99"], "pipeline 99 not found"),
        (["1", "--fleet"], "exactly one of"),
    ],
)
def test_bad_subject_exits_2_with_one_line_and_writes_nothing(  # type: ignore[no-untyped-def]
    run_placer, seeded, tmp_path, args, message
) -> None:
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    res = run_placer("--store", seeded, "report", *args, "-o", str(out))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and message in res.stderr
    assert list(out.parent.iterdir()) == []


def test_missing_output_directory_is_a_user_error(run_placer, seeded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = run_placer(
        "--store", seeded, "report", "--fleet", "-o", str(tmp_path / "nope" / "f.html")
    )
    assert res.returncode == 2
    assert "does not exist" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.slow
def test_html_report_is_self_contained_and_escapes_program_strings(  # type: ignore[no-untyped-def]
    run_placer, seeded, tmp_path
) -> None:
    out = tmp_path / "r.html"
    res = run_placer("--store", seeded, "report", "1", "-o", str(out))
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    # The site named <script>alert(1)</script> is text in the table and in the heatmap SVG.
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "<script" not in html.lower()
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert any(escaped in svg for svg in svgs)  # the heatmap's row label
    assert escaped in re.sub(r"<svg.*?</svg>", "", html, flags=re.S)  # the tables
    # No network: no external stylesheet, script, font or image.
    for needle in ('src="http', "src='http", 'href="http', "@import", "url(http"):
        assert needle not in html
    md = run_placer("--store", seeded, "report", "1", "--format", "md").stdout
    assert "<script>" not in md and "&lt;script&gt;" in md

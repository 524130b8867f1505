"""Issue 17: the downstream steps' faster paths give the answers the plain paths give.

A program of 10,000 sites made ``recommend`` and ``report`` slow (the budget curve planned
10,000 groups 60 times, the HTML listed every row); these tests pin that the shortcuts
choose, price and validate exactly as before.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import placer.placement.recommend as rec
from placer.cli import main
from placer.collectors.profile.dhat import match_points, site_key
from placer.placement import planfile, planner
from placer.reports import build, render
from tests.placement_store import make_corpus
from tests.report_fixtures import open_store, seed_run


def _dp_reference(values: np.ndarray, weights: np.ndarray, cap: int) -> np.ndarray:
    """The DP loop as it was before it worked in place (one new array per item)."""
    n = len(values)
    best = np.zeros(cap + 1)
    keep = np.zeros((n, cap + 1), dtype=bool)
    for k, (wi, vi) in enumerate(zip(weights, values, strict=True)):
        if wi > cap:
            continue
        shifted = np.full(cap + 1, -np.inf)
        shifted[wi:] = best[: cap + 1 - wi] + vi
        better = shifted > best
        keep[k] = better
        best = np.where(better, shifted, best)
    take = np.zeros(n, dtype=bool)
    c = int(np.argmax(best))
    for k in range(n - 1, -1, -1):
        if keep[k, c]:
            take[k] = True
            c -= int(weights[k])
    return take


def test_in_place_dp_takes_the_same_items_as_the_reference_loop() -> None:
    rng = random.Random(17)
    for _ in range(60):
        n = rng.randint(1, 40)
        cap = rng.randint(1, 300)
        # repeated values and weights: ties are where two loops could part
        values = np.array(
            [float(rng.choice([0.5, 1.0, 2.0, rng.uniform(0.1, 3)])) for _ in range(n)]
        )
        weights = np.array([rng.randint(1, cap) for _ in range(n)], dtype=np.int64)
        got = planner._dp(values, weights, cap, resolution=cap, cells=10**9)
        # _dp fills what the table leaves by density; with unscaled weights nothing is left
        # that fits, so its choice is the table's own
        assert got.tolist() == _dp_reference(values, weights, cap).tolist()


@pytest.mark.parametrize("stop", [False, True])
def test_greedy_with_one_moment_matches_the_per_moment_path(stop: bool) -> None:
    rng = random.Random(3)
    for _ in range(50):
        n = rng.randint(1, 60)
        w = np.array([rng.randint(0, 100) for _ in range(n)], dtype=np.int64)
        order = list(range(n))
        rng.shuffle(order)
        cap = rng.randint(0, 40 * n)
        one = planner.greedy(order, w, cap, stop_at_first=stop)
        # the same constraint written twice takes the array-per-item path
        two = planner.greedy(order, w, cap, stop_at_first=stop, live=np.vstack([w, w]))
        assert one.tolist() == two.tolist()
        assert int(w[one].sum()) <= cap


def test_slowdown_from_group_values_is_price_to_the_bit() -> None:
    rng = random.Random(5)
    for _ in range(30):
        groups = [[rng.randint(0, 50) for _ in range(rng.randint(0, 4))] for _ in range(40)]
        shares = {o: rng.uniform(0, 0.01) for o in range(0, 50, 2)}
        dram = np.array([rng.random() < 0.5 for _ in groups])
        frame = pd.DataFrame({"objects": groups})
        values = planner.group_values(frame, shares).tolist()
        assert planner.slowdown(values, dram) == planner.price(groups, dram, shares)


def test_html_lists_the_top_rows_and_says_how_many_more(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = open_store(sqlite_url)
    try:
        run_id = seed_run(st)
        doc = build(st, "run", run_id)
    finally:
        st.dispose()
    monkeypatch.setattr(render, "HTML_TABLE_ROWS", 3)
    html = render.render(doc, "html")
    objects = html[html.index('id="objects"') :]
    body = objects[objects.index("<tbody>") : objects.index("</tbody>")]
    assert body.count("<tr>") == 3
    more = re.search(r'id="objects-more">([^<]*)<code>', objects)
    assert more is not None
    assert "first 3 of 10 objects, by the model" in more.group(1)
    assert "7 more" in more.group(1)
    rest = sorted(doc["objects"]["rows"][3:], key=lambda r: r["id"])
    assert render.human_bytes(sum(r["size_bytes"] for r in rest)) in more.group(1)
    # the JSON twin keeps every row
    assert len(json.loads(render.render(doc, "json"))["objects"]["rows"]) == 10
    decisions = doc["plan"]["decisions"]
    if len(decisions) > 3:
        assert f"first 3 of {len(decisions)} decisions" in html
    # at the default the small report lists everything and says nothing more
    monkeypatch.setattr(render, "HTML_TABLE_ROWS", 500)
    full = render.render(doc, "html")
    assert "objects-more" not in full and "decisions-more" not in full


def test_recommend_validates_its_plan_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan is validated once, after its last key (host) is set; ``--output`` writes
    that very document without validating it again (0.5 s for 10,000 sites)."""
    url = f"sqlite:///{tmp_path / 'v.db'}"
    run_id = make_corpus(url, apps=1, runs_per_app=1, n=10, seed=5)[0]
    calls: list[str] = []
    real = planfile.validate

    def counting(doc, where="plan"):  # type: ignore[no-untyped-def]
        calls.append(str(sorted(doc)))
        return real(doc, where)

    monkeypatch.setattr(rec, "validate", counting)
    monkeypatch.setattr(planfile, "validate", counting)
    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "plan.json"
    argv = ["--store", url, "recommend", str(run_id), "--dram-budget", "50%", "--output", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    assert len(calls) == 1 and "'host'" in calls[0]
    written = planfile.read_plan(out)  # what was written is a valid plan
    assert "host" in written and written["decisions"]
    # a caller that did not validate still gets the check, and nothing half-written
    bad = dict(written, version=2)
    with pytest.raises(Exception, match="not a valid placer plan"):
        planfile.write_plan(tmp_path / "bad.json", bad)
    assert not (tmp_path / "bad.json").exists()


def _match_reference(points, sites):  # type: ignore[no-untyped-def]
    """DHAT point → site matching as it was: a scan of the sites sharing the first frame."""
    by_first: dict = {}
    for sid, chain in sites.items():
        key = site_key(chain)
        if key:
            by_first.setdefault(key[0], []).append((sid, key))
    out: dict = {}
    for pp in points:
        pkey = pp.key()
        if not pkey or pkey[0] not in by_first:
            continue
        best, best_len = None, 0
        for sid, key in by_first[pkey[0]]:
            n = 0
            for a, b in zip(pkey, key, strict=False):
                if a != b:
                    break
                n += 1
            if n > best_len or (n == best_len and best is not None and sid < best):
                best, best_len = sid, n
        if best is not None:
            out.setdefault(best, []).append(pp)
    return out


class _Point:
    def __init__(self, key: tuple) -> None:
        self._key = key

    def key(self) -> tuple:
        return self._key


def test_dhat_points_match_the_sites_the_scan_matched() -> None:
    """10,000 sites sharing their malloc line made the scan quadratic (minutes)."""
    rng = random.Random(11)
    files = ["a.c", "b.c", "c.cc"]
    for _ in range(40):

        def chain(n: int) -> list[str]:
            return [f"/src/{rng.choice(files)}:{rng.randint(1, 4)}" for _ in range(n)]

        sites = {}
        for _k in range(rng.randint(0, 30)):
            sites[rng.randint(1, 500)] = chain(rng.randint(0, 5)) + ["libc.so+0x10"]
        points = [
            _Point(tuple((rng.choice(files), rng.randint(1, 4)) for _ in range(rng.randint(0, 6))))
            for _ in range(60)
        ]
        got = match_points(points, sites)  # type: ignore[arg-type]
        want = _match_reference(points, sites)
        assert {k: [id(p) for p in v] for k, v in got.items()} == {
            k: [id(p) for p in v] for k, v in want.items()
        }

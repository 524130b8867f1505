"""The example graph suite gives correct answers: each kernel against a plain Python
reference on exactly the edge list the C generator produced (written by ``gen``)."""

from __future__ import annotations

import heapq
import importlib.util
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _load_build():  # type: ignore[no-untyped-def]
    name = "_placer_examples_build"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "examples" / "build.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run(name: str, *args: str | Path) -> dict[str, str]:
    """Run an example binary; return its result line's key=value fields."""
    done = subprocess.run(
        [str(_load_build().examples_bin(name)), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{name}: "), line
    return dict(re.findall(r"(\w+)=(\S+)", line))


def fails(name: str, *args: str | Path) -> str:
    """Run an example binary expected to reject its input; return its one-line error."""
    done = subprocess.run(
        [str(_load_build().examples_bin(name)), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), done.stderr
    return lines[0]


# --------------------------------------------------------------- references


class Graph:
    """Adjacency (sorted, deduplicated, no self loops) built the way the C code documents."""

    def __init__(self, path: Path, n: int, directed: bool = False) -> None:
        self.n = n
        self.out: list[dict[int, int]] = [{} for _ in range(n)]
        for line in path.read_text().splitlines():
            u, v, w = map(int, line.split())
            if u == v:
                continue
            arcs = [(u, v)] if directed else [(u, v), (v, u)]
            for a, b in arcs:
                self.out[a][b] = min(w, self.out[a].get(b, w))
        self.inn: list[list[int]] = [[] for _ in range(n)]
        for u in range(n):
            for v in self.out[u]:
                self.inn[v].append(u)

    def bfs(self, s: int) -> list[int]:
        depth = [-1] * self.n
        depth[s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in self.out[u]:
                if depth[v] < 0:
                    depth[v] = depth[u] + 1
                    queue.append(v)
        return depth

    def pagerank(self, iters: int, d: float = 0.85) -> list[float]:
        n = self.n
        scores = [1.0 / n] * n
        for _ in range(iters):
            contrib = [scores[u] / len(self.out[u]) if self.out[u] else 0.0 for u in range(n)]
            scores = [(1 - d) / n + d * sum(contrib[u] for u in self.inn[v]) for v in range(n)]
        return scores

    def components(self) -> list[int]:
        parent = list(range(self.n))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for u in range(self.n):
            for v in self.out[u]:
                a, b = find(u), find(v)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        return [find(v) for v in range(self.n)]

    def dijkstra(self, s: int) -> list[int]:
        dist = [-1] * self.n
        heap = [(0, s)]
        while heap:
            d, u = heapq.heappop(heap)
            if dist[u] >= 0:
                continue
            dist[u] = d
            for v, w in self.out[u].items():
                if dist[v] < 0:
                    heapq.heappush(heap, (d + w, v))
        return dist

    def brandes(self, sources: list[int]) -> list[float]:
        bc = [0.0] * self.n
        for s in sources:
            sigma = [0.0] * self.n
            depth = [-1] * self.n
            sigma[s], depth[s] = 1.0, 0
            order, queue = [], deque([s])
            while queue:
                u = queue.popleft()
                order.append(u)
                for v in self.out[u]:
                    if depth[v] < 0:
                        depth[v] = depth[u] + 1
                        queue.append(v)
                    if depth[v] == depth[u] + 1:
                        sigma[v] += sigma[u]
            delta = [0.0] * self.n
            for u in reversed(order):
                for v in self.out[u]:
                    if depth[v] == depth[u] + 1:
                        delta[u] += sigma[u] / sigma[v] * (1 + delta[v])
                if u != s:
                    bc[u] += delta[u]
        return bc

    def triangles(self) -> int:
        adj = [set(nb) for nb in self.out]
        return sum(
            1 for u in range(self.n) for v in adj[u] if v < u for w in adj[u] & adj[v] if w < v
        )


def per_vertex(path: Path, cast=int) -> list:  # type: ignore[no-untyped-def, type-arg]
    values = {}
    for line in path.read_text().splitlines():
        v, x = line.split()
        values[int(v)] = cast(x)
    return [values[v] for v in sorted(values)]


# ----------------------------------------------------------------- fixtures

GRAPHS = {"kron": ("-g", "9"), "uniform": ("-u", "9")}


@pytest.fixture(scope="module", params=sorted(GRAPHS))
def graph_case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(source flags, edge-list file, undirected reference, directed reference)."""
    flags = (*GRAPHS[request.param], "-k", "8", "-s", "7")
    path = tmp_path_factory.mktemp(request.param) / "edges.el"
    info = run("gen", *flags, "-o", path)
    n = int(info["vertices"])
    assert n == 2**9
    return flags, path, Graph(path, n), Graph(path, n, directed=True)


# -------------------------------------------------------------------- tests


def test_generator_is_deterministic_per_seed_and_independent_of_threads(tmp_path: Path) -> None:
    a = run("gen", "-g", "10", "-s", "3", "-t", "1", "-o", tmp_path / "a")
    b = run("gen", "-g", "10", "-s", "3", "-t", "2", "-o", tmp_path / "b")
    c = run("gen", "-g", "10", "-s", "4", "-o", tmp_path / "c")
    u = run("gen", "-u", "10", "-s", "3", "-o", tmp_path / "u")
    assert a["checksum"] == b["checksum"]
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert len({a["checksum"], c["checksum"], u["checksum"]}) == 3
    assert a["edges"] == str(16 * 2**10)  # -k 16 edges per vertex by default


def test_kronecker_degrees_are_skewed_and_uniform_are_not(tmp_path: Path) -> None:
    def max_degree(*flags: str) -> int:
        run("gen", *flags, "-k", "8", "-o", tmp_path / "e")
        deg: dict[int, int] = {}
        for line in (tmp_path / "e").read_text().splitlines():
            for v in map(int, line.split()[:2]):
                deg[v] = deg.get(v, 0) + 1
        return max(deg.values())

    # average degree 16 in both; RMAT hubs have hundreds, uniform stays near the mean
    assert max_degree("-g", "12") > 10 * 16
    assert max_degree("-u", "12") < 4 * 16


def test_bfs_depths(graph_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    flags, _, und, dire = graph_case
    for ref, extra in ((und, ()), (dire, ("-d",))):
        info = run("bfs", *flags, *extra, "-r", "5", "-o", tmp_path / "d")
        want = ref.bfs(5)
        assert per_vertex(tmp_path / "d") == want
        assert int(info["reached"]) == sum(d >= 0 for d in want)
        assert int(info["checksum"]) == sum(d for d in want if d >= 0)


def test_pagerank_scores(graph_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    flags, _, und, dire = graph_case
    for ref, extra in ((und, ()), (dire, ("-d",))):
        info = run("pr", *flags, *extra, "-i", "12", "-e", "0", "-o", tmp_path / "s")
        assert info["iterations"] == "12"
        got, want = per_vertex(tmp_path / "s", float), ref.pagerank(12)
        assert got == pytest.approx(want, rel=1e-4, abs=1e-9)


def test_pagerank_stops_at_tolerance(graph_case) -> None:  # type: ignore[no-untyped-def]
    flags = graph_case[0]
    loose = run("pr", *flags, "-e", "1e-2")
    tight = run("pr", *flags, "-e", "1e-7", "-i", "100")
    assert int(loose["iterations"]) < int(tight["iterations"]) < 100


def test_connected_components_labels(graph_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    flags, _, und, dire = graph_case
    for ref, extra in ((und, ()), (dire, ("-d",))):  # directed: weakly connected
        info = run("cc", *flags, *extra, "-o", tmp_path / "c")
        want = ref.components()  # union by min id: each label is the component's min vertex
        assert per_vertex(tmp_path / "c") == want
        assert int(info["components"]) == len(set(want))


def test_sssp_distances(graph_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    flags, _, und, dire = graph_case
    for ref, extra in ((und, ()), (dire, ("-d",))):
        info = run("sssp", *flags, *extra, "-r", "3", "-o", tmp_path / "d")
        want = ref.dijkstra(3)
        assert per_vertex(tmp_path / "d") == want
        assert int(info["checksum"]) == sum(d for d in want if d >= 0)


def test_triangle_count(graph_case) -> None:  # type: ignore[no-untyped-def]
    flags, _, und, _ = graph_case
    assert int(run("tc", *flags)["triangles"]) == und.triangles()


def test_betweenness_on_small_graph(tmp_path: Path) -> None:
    flags = ("-g", "6", "-k", "4", "-s", "2")
    run("gen", *flags, "-o", tmp_path / "e")
    for directed in (False, True):
        ref = Graph(tmp_path / "e", 64, directed=directed)
        extra = ("-d",) if directed else ()
        info = run("bc", *flags, *extra, "-r", "1", "-r", "9", "-r", "30", "-o", tmp_path / "b")
        assert info["sources"] == "1,9,30"
        got = per_vertex(tmp_path / "b", float)
        assert got == pytest.approx(ref.brandes([1, 9, 30]), rel=1e-9, abs=1e-9)
        assert max(got) > 0


def test_results_do_not_depend_on_threads() -> None:
    flags = ("-g", "11", "-k", "8")
    for kernel in ("bfs", "pr", "cc", "sssp", "bc", "tc"):
        one = run(kernel, *flags, "-t", "1")
        two = run(kernel, *flags, "-t", "2", "-n", "2")
        assert one["checksum"] == two["checksum"], kernel
        assert two["trials"] == "2"


def test_reading_an_edge_list_matches_generating_it(graph_case) -> None:  # type: ignore[no-untyped-def]
    flags, path, _, _ = graph_case
    for kernel in ("bfs", "sssp", "cc"):
        assert (
            run(kernel, *flags, "-r", "5")["checksum"]
            == run(kernel, "-f", path, "-r", "5")["checksum"]
        ), kernel


def test_bad_input_is_rejected_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.el"
    bad.write_text("# comment\n0 1\n1 two\n")
    assert f"{bad}:3:" in fails("bfs", "-f", bad)
    empty = tmp_path / "empty.el"
    empty.write_text("# nothing\n")
    assert "has no edges" in fails("pr", "-f", empty)
    assert "cannot open" in fails("cc", "-f", tmp_path / "missing.el")
    assert "undirected" in fails("tc", "-g", "5", "-d")
    assert "exactly one graph source" in fails("bfs", "-g", "5", "-u", "5")
    assert "not a vertex" in fails("sssp", "-g", "5", "-r", "99")
    assert "-g expects" in fails("pr", "-g", "0")
    assert "unknown option" in fails("bc", "-x")


def test_each_array_has_its_own_named_allocation_function() -> None:
    """Profiles name objects by their allocating function: those must survive -O2."""
    from elftools.elf.elffile import ELFFile

    with open(_load_build().examples_bin("pr"), "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        names = {s.name for s in symtab.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
    for fn in (
        "alloc_edge_list",
        "build_csr_offsets",
        "build_csr_neighbors",
        "build_in_csr_neighbors",
        "alloc_pr_scores",
        "alloc_pr_contrib",
    ):
        assert fn in names, fn


def test_examples_bin_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown example"):
        _load_build().examples_bin("nope")

"""The layout rules of docs/architecture.md that import-linter does not check."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("placer", "collectors", "tuners")
#: Third-party libraries slow enough to import that code may import them where used.
HEAVY = {
    "alembic",
    "elftools",
    "jinja2",
    "jsonschema",
    "lightgbm",
    "matplotlib",
    "numpy",
    "optuna",
    "pandas",
    "platformdirs",
    "prometheus_client",
    "psycopg",
    "rich",
    "scipy",
    "sklearn",
    "sqlalchemy",
    "tensorflow",
    "torch",
    "torchdata",
}
MAX_LINES = 800


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports_in_functions(path: Path) -> list[tuple[int, str, str]]:
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                name = node.names[0].name
            elif isinstance(node, ast.ImportFrom):
                name = "." * node.level + (node.module or "")
            else:
                continue
            context = " ".join(lines[max(node.lineno - 2, 0) : node.end_lineno])
            found.append((node.lineno, name, context))
    return found


def test_no_import_hides_inside_a_function_except_a_documented_lazy_one() -> None:
    """An import inside a function can hide a back edge; only heavy libraries may be lazy."""
    hidden = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in _modules()
        for line, name, context in _imports_in_functions(path)
        if name.split(".")[0] not in HEAVY and "lazy:" not in context
    ]
    assert not hidden, "imports inside functions:\n" + "\n".join(hidden)


def test_no_module_is_over_800_lines() -> None:
    long = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, long


def test_every_docstring_reference_to_a_doc_names_a_file_that_exists() -> None:
    """`docs/x.md` in a docstring or comment must point at a real file."""
    missing = []
    for path in _modules():
        for ref in re.findall(r"docs/[\w./-]+\.md", path.read_text()):
            if not (ROOT / ref).is_file():
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
        assert "design map" not in path.read_text(), f"{path}: cites the design map"
    assert not missing, missing


def _top_level_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(n, m) for n, m in found if m.split(".")[0] in ("collectors", "tuners", "migrations")]


def test_the_folders_beside_placer_are_imported_as_placer_subpackages() -> None:
    """The wheel installs only ``placer``: ``import collectors`` works in a checkout only."""
    files = [*_modules(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "migrations").rglob("*.py")]
    files += [*(ROOT / "examples").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    files += [ROOT / "setup.py", *(ROOT / "scripts").rglob("*.py")]
    bad = [f"{p.relative_to(ROOT)}:{n} {m}" for p in files for n, m in _top_level_imports(p)]
    assert not bad, "import these as placer.<name>: " + ", ".join(bad)
    for name in ("collectors", "tuners", "migrations"):
        link = ROOT / "placer" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), link


def test_every_test_docs_security_cites_exists() -> None:
    """security.md's guarantees point at tests; a renamed or deleted test must not leave a
    guarantee that nothing checks."""
    text = (ROOT / "docs" / "security.md").read_text()
    cited: list[tuple[str, str]] = []
    current = ""
    for ref in re.findall(r"`((?:tests/[\w/]+\.py)?::\w+)`", text):
        path, _, name = ref.partition("::")
        current = path or current
        cited.append((current, name))
    assert len(cited) > 20
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not re.search(rf"^\s*(async )?def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert not missing, missing

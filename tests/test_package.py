"""The wheel holds all three packages and the migrations, and migrations run from it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (found,) = out.glob("placer-*.whl")
    return found


@pytest.mark.slow
def test_wheel_contains_packages_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("placer", "collectors", "tuners", "migrations", "migrations/versions"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert "migrations/env.py" in names
    assert "migrations/script.py.mako" in names
    assert "placer/daemon/placer-daemon.service" in names  # `placer daemon unit` prints it
    assert any(
        n.startswith("migrations/versions/") and n.endswith("_initial_schema.py") for n in names
    )
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "placer = placer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_migrations_run_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    db = tmp_path / "w.db"
    code = (
        "import sys, migrations; assert placer.migrations.__file__.startswith(sys.argv[1]), "
        "placer.migrations.__file__; from placer.store import Store; "
        f"s = Store('sqlite:///{db}'); s.upgrade(); print(s.current_revision())"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    assert out.stdout.strip() != "None"

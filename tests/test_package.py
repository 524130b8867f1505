"""The wheel is one import package, ``placer``, with the migrations; they run from it."""

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
    (found,) = out.glob("placer_ml-*.whl")
    return found


@pytest.mark.slow
def test_wheel_contains_packages_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("placer", "collectors", "tuners", "migrations", "migrations/versions"):
        pkg = pkg if pkg == "placer" else f"placer/{pkg}"
        assert f"{pkg}/__init__.py" in names, pkg
    assert "placer/migrations/env.py" in names
    assert "placer/migrations/script.py.mako" in names
    assert "placer/daemon/placer-daemon.service" in names  # `placer daemon unit` prints it
    assert any(
        n.startswith("placer/migrations/versions/") and n.endswith("_initial_schema.py")
        for n in names
    )
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "placer = placer.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_the_wheel_adds_only_placer_at_top_level_of_a_clean_venv(
    wheel: Path, tmp_path: Path
) -> None:
    """A Django project's own ``migrations`` (or any ``collectors``) must not be shadowed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site = Path(purelib)
    before = {p.name for p in site.iterdir()}
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        + [str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    added = {p.name for p in site.iterdir()} - before
    version = wheel.name.split("-")[1]
    assert added == {"placer", f"placer_ml-{version}.dist-info"}, added
    # the dependencies come from the test's own environment (a path, not its .pth files)
    deps = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sqlalchemy, os; print(os.path.dirname(os.path.dirname(sqlalchemy.__file__)))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (site / "zz_test_deps.pth").write_text(deps + "\n")
    code = (
        "import importlib.util as u, sys, placer, placer.collectors.shim.library as lib, "
        "placer.tuners.analysis; "
        "assert placer.__file__.startswith(sys.argv[1]), placer.__file__; "
        "assert not any(u.find_spec(n) for n in ('collectors', 'tuners', 'migrations')); "
        "assert lib.shim_path().is_file(); print('ok')"
    )
    out = subprocess.run(
        [str(python), "-c", code, str(site)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.stdout.strip() == "ok", out.stderr
    cli = subprocess.run(
        [str(venv / "bin" / "placer"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert cli.returncode == 0 and "placer" in cli.stdout, cli.stderr


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
        "import sys, placer.migrations as m; assert m.__file__.startswith(sys.argv[1]), "
        "m.__file__; from placer.store import Store; "
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

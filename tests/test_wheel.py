"""The wheel pipx, uv and pip install: built from a copy of the source (no network, no build
isolation), it carries every file the package reads at run time, declares the `dream-window`
command, and `python -m dream_window` runs from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "dream_window"

pytestmark = pytest.mark.slow  # a build and an unpacked install: a few seconds


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: a build in place would leave build/ and egg-info in the checkout.
    src = tmp_path_factory.mktemp("source")
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(
        REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    )
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"),
            *("-w", str(out), str(src)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (built,) = out.glob("dream_window-*.whl")
    return built


def test_the_wheel_carries_every_data_file_of_the_package(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = {
        "dream_window/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    # What the command reads at run time, named so a missing pattern is obvious in the failure.
    for needed in (
        "dream_window/data/config.yaml",
        "dream_window/web/static/index.html",
        "dream_window/py.typed",
    ):
        assert needed in data_files
    assert any(n.startswith("dream_window/interpolation/vae_configs/") for n in data_files)
    assert sorted(data_files - names) == []
    python_files = {
        "dream_window/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sorted(python_files - names) == []


def test_the_wheel_declares_the_command_and_its_dependencies(wheel: Path) -> None:
    z = zipfile.ZipFile(wheel)
    dist_info = next(n.split("/")[0] for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    entry_points = z.read(f"{dist_info}/entry_points.txt").decode()
    assert "[console_scripts]\ndream-window = dream_window.__main__:main\n" in entry_points
    metadata = z.read(f"{dist_info}/METADATA").decode()
    requires = {
        line.split(":", 1)[1].strip().split(">")[0].split("[")[0]
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert {"platformdirs", "click", "aiohttp", "pydantic", "PyYAML", "Pillow", "numpy"} <= requires
    assert "Requires-Python: >=3.11" in metadata


def test_python_m_dream_window_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # The unpacked wheel comes first on the path (before this checkout's editable install); the
    # dependencies come from this environment, as they would from pipx's.
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
        )

    where = run(
        "-c",
        "import dream_window, importlib.resources as r; print(dream_window.__file__); "
        "print((r.files('dream_window') / 'data' / 'config.yaml').is_file())",
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.splitlines() == [str(target / "dream_window" / "__init__.py"), "True"]
    version = run("-m", "dream_window", "--version")
    assert (version.returncode, version.stdout) == (0, "dream-window, version 0.1.0\n")
    help_ = run("-m", "dream_window", "--help")
    assert help_.returncode == 0
    for command in ("run", "init", "doctor", "autostart"):
        assert f"  {command} " in help_.stdout
    init = run("-m", "dream_window", "init", "here.yaml")
    assert init.returncode == 0, init.stderr  # the packaged config.yaml was found and written
    assert (elsewhere / "here.yaml").read_text(encoding="utf-8").startswith("# Dream Window configuration.")

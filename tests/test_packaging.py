"""`pip install .` gives a package that runs: its dependencies, extras and the `video-search` command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def requirements(name: str) -> list[str]:
    """The requirement lines of a requirements file (comments and `-r` includes left out)."""
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_dependencies_and_extras_match_the_requirements_files() -> None:
    meta = project()
    assert meta["dependencies"] == requirements("requirements.txt")
    assert meta["optional-dependencies"]["scale"] == requirements("requirements-scale.txt")
    assert meta["optional-dependencies"]["dev"] == requirements("requirements-dev.txt")
    assert "torch==2.13.0" in meta["dependencies"]
    assert not any(re.match(r"(torchvision|timm)\b", d) for d in meta["dependencies"])


def test_the_console_script_is_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    module, _, function = project()["scripts"]["video-search"].partition(":")
    main = getattr(__import__(module, fromlist=[function]), function)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "search" in capsys.readouterr().out


@pytest.mark.slow
def test_the_wheel_holds_the_library_and_the_command(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "demo", source / "demo", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("video_search_demo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    assert "demo/cli/__init__.py" in names and "demo/search/searcher.py" in names
    assert not any(n.startswith("tests/") for n in names)
    assert "video-search = demo.cli:main" in entry_points
    assert "Requires-Dist: torch==2.13.0" in metadata

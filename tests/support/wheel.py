"""The package as it ships: the wheel built from this checkout, installed into a fresh venv.

    bin_dir = install_wheel(workdir)     # workdir/venv/bin, with python and optin

That is what the container image does (Dockerfile: `pip wheel --no-deps .`, then
`pip install` of that wheel alone), and what tests/test_package.py and
tests/test_container.py run the service from. The conftest's `installed` fixture makes
one per test session.

No pytest import: like servers.py, it stands on its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .campaigns import ROOT

# What the build must not see: a stale build/lib would slip old files into the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "var", ".*_cache", ".hypothesis"
)


def run(argv: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its stdout, or an AssertionError with all it wrote."""
    done = subprocess.run([str(part) for part in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(workdir: Path) -> Path:
    """The wheel of a copy of this checkout, built as the image's build stage builds it."""
    source = workdir / "source" / "optin-pages"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SOURCE)
    wheels = workdir / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", wheels, source], cwd=source)
    (wheel,) = wheels.glob("optin_pages-*.whl")
    return wheel


def install_wheel(workdir: Path) -> Path:
    """The bin/ directory of a fresh venv in `workdir` holding the wheel and its
    dependencies, installed from binary wheels only, as the image installs them."""
    wheel = build_wheel(workdir)
    venv = workdir / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=workdir)
    # This venv's pip installs into the new one; no bytecode, to keep the test quick.
    run(
        [
            sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
            "--quiet", "--no-compile", "--only-binary=:all:", wheel,
        ],
        cwd=workdir,
    )  # fmt: skip
    return venv / "bin"

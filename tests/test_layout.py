"""The import rules of SPEC section 1 (`lint-imports`, contracts in .importlinter) hold, and they
have teeth: a service that imports another breaks them."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
# Beside the interpreter: a dev dependency, so missing is a failure, in CI and out of it.
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the packages of `tree` (it puts its working directory first on the path)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _root_packages() -> list[str]:
    config = configparser.ConfigParser()
    config.read(CONFIG)
    return config["importlinter"]["root_packages"].split()


def test_the_tree_keeps_every_import_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_service_importing_another_breaks_a_contract(tmp_path: Path) -> None:
    shutil.copy(CONFIG, tmp_path)
    for package in _root_packages():
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    keys = tmp_path / "orders_api" / "keys.py"
    keys.write_text(keys.read_text() + "\nimport tracker  # planted\n")

    result = _lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "No service package imports another service package BROKEN" in result.stdout
    assert "orders_api.keys -> tracker" in result.stdout

"""The layout of the tests: nothing outside tests/ imports from tests/ (the scripts and the benchmark use
devtools/), and the console's tests stay in their own folder."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = {".venv", "node_modules", "build", "models", "results", "var", ".git", "tests"}


def imports_of_tests(path: Path) -> List[str]:
    """The ``tests`` imports of one Python file (``import tests...``, ``from tests... import``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == "tests"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "tests":
            found.append(node.module or "")
    return found


def python_files_outside_tests() -> List[Path]:
    return [path for path in ROOT.rglob("*.py")
            if not SKIPPED & set(path.relative_to(ROOT).parts[:-1]) and path.parent != ROOT / "tests"]


def test_nothing_outside_tests_imports_from_tests() -> None:
    files = python_files_outside_tests()
    assert any(path.parts[-2:] == ("scripts", "soak_memory.py") for path in files)  # the walk sees the scripts
    offenders = {str(path.relative_to(ROOT)): found for path in files if (found := imports_of_tests(path))}
    assert not offenders, offenders


def test_the_check_finds_an_import_of_tests(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom tests.servers import Servers\nimport tests.conftest as c\nfrom . import x\n")
    assert imports_of_tests(script) == ["tests.servers", "tests.conftest"]


def test_the_console_tests_are_in_their_folder() -> None:
    assert not list((ROOT / "tests").glob("test_console_*.py"))
    assert (ROOT / "tests" / "console" / "conftest.py").exists()

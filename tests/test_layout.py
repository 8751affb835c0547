"""The core must stay framework-free: no module under sealmail.core imports Django."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sealmail.core

CORE_DIR = Path(sealmail.core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_sources_never_import_django():
    offenders = {}
    for path in sorted(CORE_DIR.rglob("*.py")):
        bad = {name for name in imported_modules(path) if name.split(".")[0] == "django"}
        if bad:
            offenders[str(path.relative_to(CORE_DIR))] = sorted(bad)
    assert offenders == {}


def test_core_import_loads_no_django():
    modules = [
        "sealmail.core." + ".".join(path.relative_to(CORE_DIR).with_suffix("").parts)
        for path in sorted(CORE_DIR.rglob("*.py"))
        if path.name != "__init__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_core_has_modules():
    assert list(CORE_DIR.rglob("*.py")), "the layout test would pass vacuously"

"""Every public function and class of the public surface says what it does.

The surface: `api.py` (what `import llmos` re-exports), `runtime/namespaces.py`
(`llmos.datasets`, `llmos.tasks`, `llmos.runs`), the verb handlers in `commands/`, and
every package's `__init__` (which also says what the package holds and may import).
Read with `ast`, so nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llmos_jupyter"
SURFACE = [PACKAGE / "api.py", PACKAGE / "runtime" / "namespaces.py",
           *sorted((PACKAGE / "commands").glob("*.py")),
           *sorted(PACKAGE.rglob("__init__.py")), ROOT / "llmos" / "__init__.py"]


def missing_docstrings(path: Path) -> list[str]:
    """`path:line name` of each public def or class (and public method of a public class)
    without a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    where = path.relative_to(ROOT)
    missing = [] if ast.get_docstring(tree) else [f"{where}: the module"]
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in tree.body:
        if not isinstance(node, kinds) or node.name.startswith("_"):
            continue
        if not ast.get_docstring(node):
            missing.append(f"{where}:{node.lineno} {node.name}")
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if (isinstance(member, kinds) and not member.name.startswith("_")
                        and not ast.get_docstring(member)):
                    missing.append(f"{where}:{member.lineno} {node.name}.{member.name}")
    return missing


def test_the_public_surface_has_docstrings():
    assert [m for path in SURFACE for m in missing_docstrings(path)] == []


def test_the_check_finds_a_missing_docstring(tmp_path):
    bare = tmp_path / "bare.py"
    bare.write_text('"""A module."""\n\ndef f():\n    pass\n\n\nclass C:\n'
                    '    """A class."""\n\n    def g(self):\n        pass\n\n'
                    '    def _h(self):\n        pass\n')
    found = [m.split(" ", 1)[1] for m in missing_docstrings_at(bare, tmp_path)]
    assert found == ["f", "C.g"]


def missing_docstrings_at(path: Path, root: Path) -> list[str]:
    """missing_docstrings for a file outside the repository (the check's own test)."""
    global ROOT
    saved, ROOT = ROOT, root
    try:
        return missing_docstrings(path)
    finally:
        ROOT = saved

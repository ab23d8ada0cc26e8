"""The floors of docs/architecture.md, checked on the source: imports point down only.

Every module of `llmos_jupyter`, `llmos` and `llmos_jupyter`'s kernels is parsed with
`ast` (nothing is imported, so the check is the same on every machine), and every
import is read, including those inside functions and under TYPE_CHECKING. The tests fail
when a module imports one of a higher floor, when modules import each other in a circle,
when an interface imports another interface or anything below the api, or when an import
of our own inside a function defers nothing heavy.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"llmos_jupyter": ROOT / "llmos_jupyter", "llmos": ROOT / "llmos",
            "llmos_kernels": ROOT / "kernels" / "llmos_kernels"}

# Top to bottom, as docs/architecture.md draws them. Each floor holds units (a package or
# a module with its helpers); a unit imports itself freely and other units only on a
# lower floor, so two units of one floor never import each other.
FLOORS: list[tuple[str, list[tuple[str, ...]]]] = [
    ("public face", [("llmos", "llmos_jupyter")]),  # `import llmos`; Jupyter's entry point
    ("interfaces", [("llmos_jupyter.cli",), ("llmos_jupyter.magics",),
                    ("llmos_jupyter.widgets",), ("llmos_jupyter.server",),
                    ("llmos_jupyter.client", "llmos_jupyter.client_resources")]),
    ("commands", [("llmos_jupyter.commands",)]),
    ("api", [("llmos_jupyter.api",), ("llmos_jupyter.train",)]),
    ("runtime", [("llmos_jupyter.runtime",)]),
    ("store", [("llmos_jupyter.store",)]),
    ("tasks, data", [("llmos_jupyter.tasks",), ("llmos_jupyter.data",)]),
    ("engine", [("llmos_jupyter.engine",)]),
    ("formats, tokenizer", [("llmos_jupyter.formats",),
                            ("llmos_jupyter.tokenizer", "llmos_jupyter.chat_template")]),
    ("model", [("llmos_jupyter.model",)]),
    ("core", [("llmos_jupyter.core", "llmos_jupyter.errors", "llmos_jupyter.humanize")]),
    ("kernels", [("llmos_kernels",)]),
]
INTERFACES = list(FLOORS[1][1])
# What an interface may import besides itself: the api, the bottom floor, and (for the
# three built from the verb table: the CLI, the magics and the server's REST routes) the
# commands floor. Everything else goes through api.py.
INTERFACE_REACH = ("llmos_jupyter.api", "llmos_jupyter.core", "llmos_jupyter.errors",
                   "llmos_jupyter.humanize")
VERB_TABLE_USERS = ("llmos_jupyter.cli", "llmos_jupyter.magics", "llmos_jupyter.server")
# Imports inside a function must defer one of these (directly or through what they import),
# packages whose import the CLI's catalog verbs and `%load_ext llmos` must not pay: torch
# takes seconds; numpy, gguf, jinja2, ipywidgets, IPython a tenth of a second or more;
# yaml and tornado a few hundredths.
HEAVY = {"torch", "triton", "transformers", "peft", "pandas", "pyarrow", "numpy", "gguf",
         "jinja2", "ipywidgets", "IPython", "matplotlib", "yaml", "tornado"}

# Modules whose imports of ours inside functions keep a start-up light although what they
# defer is light itself, because it drags in a stack the start-up does not need.
START_UP_DEFERRALS = {
    # `import llmos` and `%load_ext llmos` stay instant: the API's stack loads on first use.
    "llmos": "the api and the HTTP client on first attribute access",
    # A package's __init__ runs on every import of one of its modules, so it must not
    # import all of them: `Store()` and the exported names import each store on first use.
    "llmos_jupyter.store": "each store's module on first use",
    # `llmos --help` and usage errors answer from the parser alone.
    "llmos_jupyter.cli": "the verbs' handlers once a verb is parsed",
    # `%load_ext llmos` registers the magic without importing the api's stack.
    "llmos_jupyter.magics.llmos_magic": "the verbs' handlers once a line is parsed",
}

# Modules whose deferred imports are not commented yet.
UNCOMMENTED_DEFERRALS = {"llmos_jupyter.runtime.training", "llmos_jupyter.engine.loss"}

# Known exceptions, each with why it stands; each goes when its module keeps the rules.
KNOWN_EXCEPTIONS = {
    # The training runtime looks the home up inside a function.
    ("llmos_jupyter.runtime.training", "llmos_jupyter.store.home"),
    # `llmos serve` is the command line running the server interface in the foreground.
    ("llmos_jupyter.cli", "llmos_jupyter.server.standalone"),
    # The server's handlers drive the schedulers of served models directly.
    ("llmos_jupyter.server.base", "llmos_jupyter.runtime.scheduler"),
    ("llmos_jupyter.server.base", "llmos_jupyter.runtime.serving"),
    ("llmos_jupyter.server.extension", "llmos_jupyter.runtime.serving"),
    ("llmos_jupyter.server.health", "llmos_jupyter.runtime.scheduler"),
    ("llmos_jupyter.server.openai_routes", "llmos_jupyter.engine.continuous"),
    ("llmos_jupyter.server.openai_routes", "llmos_jupyter.runtime.scheduler"),
    ("llmos_jupyter.server.openai_routes", "llmos_jupyter.runtime.services"),
    ("llmos_jupyter.server.standalone", "llmos_jupyter.runtime.serving"),
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen in module `source`."""

    source: str
    target: str  # the module imported (`from a import b` is a.b when b is a module)
    line: int
    in_function: bool
    type_checking: bool
    comment: str  # comments in the run of imports it belongs to, and on the line above


@cache
def modules() -> dict[str, Path]:
    """Every module of our packages, by dotted name."""
    found = {}
    for top, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str) -> str | None:
    """The module of ours that `name` (a module or a name in one) lives in, if any."""
    mods = modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(source: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = source.split(".")
    if modules()[source].name != "__init__.py":
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


class _Reader(ast.NodeVisitor):
    def __init__(self, source: str, lines: list[str]):
        self.source, self.lines = source, lines
        self.found: list[Import] = []
        self.depth = 0
        self.type_checking = False

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            outer, self.type_checking = self.type_checking, True
            for child in node.body:
                self.visit(child)
            self.type_checking = outer
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def block_comments(self, tree: ast.AST) -> None:
        """Comments of each run of import statements (and the line above it), by line:
        one comment above a block of imports speaks for all of them."""
        self.comments: dict[int, str] = {}
        for node in ast.walk(tree):
            for field in ("body", "orelse", "finalbody"):
                stmts = getattr(node, field, None)
                if not isinstance(stmts, list):  # a lambda's or an if-expression's body
                    continue
                run: list[ast.stmt] = []
                for stmt in [*stmts, None]:
                    if isinstance(stmt, ast.Import | ast.ImportFrom):
                        run.append(stmt)
                        continue
                    if run:
                        text = self.lines[max(run[0].lineno - 2, 0): run[-1].end_lineno]
                        comment = " ".join(t.split("#", 1)[1] for t in text if "#" in t)
                        for imp in run:
                            self.comments[imp.lineno] = comment
                    run = []

    def _add(self, node: ast.stmt, target: str) -> None:
        comment = self.comments.get(node.lineno, "")
        self.found.append(Import(self.source, target, node.lineno, self.depth > 0,
                                 self.type_checking, comment))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = _absolute(self.source, node)
        for alias in node.names:
            full = f"{module}.{alias.name}"
            self._add(node, full if full in modules() else module)


@cache
def imports() -> tuple[Import, ...]:
    """Every import statement in our modules (of ours or not)."""
    found: list[Import] = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        reader = _Reader(name, text.splitlines())
        tree = ast.parse(text, filename=str(path))
        reader.block_comments(tree)
        reader.visit(tree)
        found += reader.found
    return tuple(found)


def own_imports() -> list[Import]:
    """Imports of one of our modules by another, the target resolved to its module."""
    out = []
    for imp in imports():
        target = _resolve(imp.target)
        if target and target != imp.source:
            out.append(Import(imp.source, target, imp.line, imp.in_function,
                              imp.type_checking, imp.comment))
    return out


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def unit_of(module: str) -> tuple[int, tuple[str, ...]]:
    """(floor index, unit) of a module; floor 0 is the top."""
    best: tuple[int, tuple[str, ...], int] | None = None
    for level, (_, units) in enumerate(FLOORS):
        for unit in units:
            for prefix in unit:
                # the longest prefix wins: `llmos_jupyter.api` before `llmos_jupyter`
                if _in(module, prefix) and (best is None or len(prefix) > best[2]):
                    best = (level, unit, len(prefix))
    assert best is not None, f"{module} is on no floor: add it to FLOORS and the docs"
    return best[0], best[1]


def floor_violations() -> list[str]:
    """Imports of a unit on the same or a higher floor."""
    bad = []
    for imp in own_imports():
        (src_level, src_unit), (dst_level, dst_unit) = unit_of(imp.source), unit_of(imp.target)
        if src_unit == dst_unit or (imp.source, imp.target) in KNOWN_EXCEPTIONS:
            continue
        if dst_level <= src_level:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} "
                       f"({FLOORS[src_level][0]} -> {FLOORS[dst_level][0]})")
    return bad


def interface_violations() -> list[str]:
    """Interfaces importing another interface or anything but the api and the bottom."""
    bad = []
    for imp in own_imports():
        level, unit = unit_of(imp.source)
        if unit not in INTERFACES and FLOORS[level][0] != "commands":
            continue
        if unit_of(imp.target)[1] == unit or (imp.source, imp.target) in KNOWN_EXCEPTIONS:
            continue
        allowed = INTERFACE_REACH
        if any(_in(imp.source, p) for p in VERB_TABLE_USERS):
            allowed = (*allowed, "llmos_jupyter.commands")
        if not any(_in(imp.target, p) for p in allowed):
            bad.append(f"{imp.source}:{imp.line} imports {imp.target}")
    return bad


def import_graph(exceptions: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (anywhere in its text); without the
    KNOWN_EXCEPTIONS edges when `exceptions` is False."""
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in own_imports():
        if exceptions or (imp.source, imp.target) not in KNOWN_EXCEPTIONS:
            graph[imp.source].add(imp.target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


@cache
def heavy_reach() -> dict[str, frozenset[str]]:
    """Module -> the HEAVY packages importing it loads (module-level imports, followed
    through ours)."""
    direct: dict[str, set[str]] = {name: set() for name in modules()}
    reach: dict[str, set[str]] = {name: set() for name in modules()}
    for imp in imports():
        if imp.in_function or imp.type_checking:
            continue
        ours = _resolve(imp.target)
        if ours:
            if ours != imp.source:
                direct[imp.source].add(ours)
        elif imp.target.split(".")[0] in HEAVY:
            reach[imp.source].add(imp.target.split(".")[0])
    changed = True
    while changed:
        changed = False
        for name, targets in direct.items():
            for target in targets:
                if not reach[target] <= reach[name]:
                    reach[name] |= reach[target]
                    changed = True
    return {name: frozenset(found) for name, found in reach.items()}


def heavy_modules() -> frozenset[str]:
    """Our modules whose import loads a HEAVY package."""
    return frozenset(name for name, found in heavy_reach().items() if found)


def deferred_import_violations() -> list[str]:
    """Imports of ours inside functions that defer no HEAVY package the importing module
    does not load anyway, or that say not why."""
    bad = []
    for imp in own_imports():
        if not imp.in_function or imp.type_checking:
            continue
        if (imp.source, imp.target) in KNOWN_EXCEPTIONS or imp.source in UNCOMMENTED_DEFERRALS:
            continue
        deferred = heavy_reach()[imp.target] - heavy_reach()[imp.source]
        if not deferred and imp.source not in START_UP_DEFERRALS:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} inside a function, "
                       "but it defers nothing heavy that the module has not loaded already")
        elif not imp.comment.strip():
            bad.append(f"{imp.source}:{imp.line} defers {imp.target} with no comment why")
    return bad


def test_every_module_is_on_a_floor():
    for name in modules():
        unit_of(name)


def test_imports_point_down_only():
    assert floor_violations() == []


def test_no_import_circles():
    assert circles(import_graph(exceptions=False)) == []


def test_interfaces_call_only_the_api():
    assert interface_violations() == []


def test_imports_inside_functions_defer_something_heavy():
    assert deferred_import_violations() == []


def test_known_exceptions_are_still_needed():
    present = {(i.source, i.target) for i in own_imports()}
    assert KNOWN_EXCEPTIONS - present == set()


def test_the_checks_see_what_they_should():
    # The reader really finds imports inside functions and under TYPE_CHECKING, and the
    # checks would fail on an upward import, an interface reaching down, and a circle.
    found = {(i.source, i.target, i.in_function) for i in own_imports()}
    assert ("llmos_jupyter.magics", "llmos_jupyter.magics.llmos_magic", True) in found
    assert any(i.type_checking for i in own_imports())
    assert "llmos_jupyter.model.transformer" in heavy_modules()
    assert "llmos_jupyter.store.catalog" not in heavy_modules()
    assert unit_of("llmos_jupyter.formats.gguf")[0] < unit_of("llmos_jupyter.core.config")[0]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


if __name__ == "__main__":  # a report of the import graph: python -m tests.test_architecture
    graph = import_graph()
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports of our own")
    for title, found in [("upward imports", floor_violations()),
                         ("interfaces reaching past the api", interface_violations()),
                         ("circles", [" <-> ".join(c) for c in circles(graph)]),
                         ("circles but for the known exceptions",
                          [" <-> ".join(c) for c in circles(import_graph(exceptions=False))]),
                         ("imports in functions", deferred_import_violations()),
                         ("known exceptions", sorted(f"{a} -> {b}" for a, b in KNOWN_EXCEPTIONS))]:
        print(f"{title}: {len(found)}")
        for line in found:
            print("   ", line)
    sys.exit(0)

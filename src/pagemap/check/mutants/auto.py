"""Lock mutants, generated: a whole class of bugs, "a lock not taken".

The hand-written mutants (the rest of check/mutants/) are the bugs someone
thought of.  These are every bug of one kind: for every `with <lock>:` in
kernel/ (an item of a `with` whose expression names a lock, a mutex, a
semaphore, an rwsem, or the ext2 namespace lock `_ns(...)`; by its text, so
`contextlib.suppress` and `self.open` are not), a mutant whose patch is the
function around it recompiled from its source with that one item dropped: a
`with` of one item is replaced by its body, one of several keeps the others.
Everything else is the same code, compiled in the function's own module
globals, at its own lines and qualified name, so a trace and the race census
name it as they name the real one.

The patch swaps the `__code__` of the real function object for the length of
`applied()` (the kernel's source is never edited): every reference to the
function, a method, a static or class method, a property's accessor, the
function a decorator wrapped, runs the mutant.  A `with` inside a function
nested in another is reached by recompiling the outermost one (the nested
function's code is a constant of it).  A site is skipped, with the reason,
when the recompiled code would not fit the function object (its free
variables differ) or the item binds a name (`as x`).

A mutant's name is stable across edits that move lines:
`kernel/pagemap.py:PageMap.remove_contig:self.lock`, with `#2`, `#3` for a
second or third item of the same text in one function.  The scenarios to try
are those whose runs call the function (check/mutants/auto_map.py);
`pagemap check --mutants --auto` runs them (check/cli/auto.py).
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import copy
import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FunctionType

import pagemap.kernel
from pagemap.check.mutants.base import Mutant

# What names a lock: the sync layer's SpinLock and Semaphore are always held in
# attributes so named (lock, pte_lock, vmr_lock, sb_lock, holder_lock, ...,
# ns_lock behind `_ns(...)`, an inode's i_rwsem behind `_locked(...)`).
LOCKLIKE = re.compile(r"lock|mutex|rwsem|\bsem\b|\b_ns\(")
Func = ast.FunctionDef | ast.AsyncFunctionDef
PREFIX = "kernel/"  # a site's path is relative to the package, as coverage's are


@dataclass(frozen=True)
class Site:
    """One item of one `with` in kernel/ that takes a lock."""

    path: str  # "kernel/pagemap.py"
    module: str  # "pagemap.kernel.pagemap"
    line: int
    col: int
    item: int  # which item of the `with` (0: the first)
    expr: str  # the lock's expression, as written
    function: str  # the innermost function around it: "PageMap.remove_contig"
    first_line: int  # that function's co_firstlineno (the map's key)
    outer: str  # the function patched (outermost; the same unless nested)
    classes: tuple[str, ...]  # the classes around `outer`
    ordinal: int = 1  # the nth item of this text in `function`

    @property
    def name(self) -> str:
        tail = f"#{self.ordinal}" if self.ordinal > 1 else ""
        return f"{self.path}:{self.function}:{self.expr}{tail}"


@dataclass(frozen=True)
class Skipped:
    site: Site
    reason: str


@dataclass(frozen=True, kw_only=True)
class LockMutant(Mutant):
    """A mutant whose patch is a function's code, swapped in place."""

    site: Site
    function: FunctionType  # the real function, whose __code__ is swapped
    code: CodeType  # the recompiled code with the lock not taken
    scenarios: tuple[str, ...] = field(default=())  # to try, best first

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        # Not mock.patch: it would delete the attribute on the way out (the
        # function's __dict__ does not hold it), which a code slot refuses.
        real = self.function.__code__
        self.function.__code__ = self.code
        try:
            yield
        finally:
            self.function.__code__ = real


def _file_sites(path: Path, rel: str, module: str) -> Iterator[tuple[Site, Func, bool]]:
    """Every lock-like `with` item of the file, with the outermost function
    around it and whether the item binds a name (`as x`)."""
    tree = ast.parse(path.read_text(), str(path))

    def tops(
        body: list[ast.stmt], classes: tuple[str, ...]
    ) -> Iterator[tuple[Func, tuple[str, ...]]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield node, classes
            elif isinstance(node, ast.ClassDef):
                yield from tops(node.body, (*classes, node.name))
            elif isinstance(node, ast.If):
                yield from tops(node.body + node.orelse, classes)

    for outer, classes in tops(tree.body, ()):
        prefix = ".".join(classes) + "." if classes else ""
        seen: dict[tuple[str, str], int] = {}
        for fn, qual, w in _withs(outer, prefix + outer.name):
            for i, item in enumerate(w.items):
                expr = ast.unparse(item.context_expr)
                if not LOCKLIKE.search(expr):
                    continue
                ordinal = seen[qual, expr] = seen.get((qual, expr), 0) + 1
                first = fn.decorator_list[0].lineno if fn.decorator_list else fn.lineno
                site = Site(
                    rel, module, w.lineno, w.col_offset, i, expr, qual, first,
                    prefix + outer.name, classes, ordinal,
                )  # fmt: skip
                yield site, outer, item.optional_vars is not None


def _withs(fn: Func, qual: str) -> Iterator[tuple[Func, str, ast.With]]:
    """The `with` statements of `fn`, each with its innermost function and
    that function's qualified name, in source order."""
    yield from _withs_in(fn, fn, qual)


def _withs_in(node: ast.AST, fn: Func, qual: str) -> Iterator[tuple[Func, str, ast.With]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _withs(child, f"{qual}.<locals>.{child.name}")
        elif isinstance(child, (ast.ClassDef, ast.Lambda)):
            continue
        else:
            if isinstance(child, ast.With):
                yield fn, qual, child
            yield from _withs_in(child, fn, qual)


class _Drop(ast.NodeTransformer):
    """The `with` at (line, col) without its item `item`."""

    def __init__(self, line: int, col: int, item: int) -> None:
        self.at = (line, col)
        self.item = item
        self.done = False

    def visit_With(self, node: ast.With) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)
        if (node.lineno, node.col_offset) != self.at:
            return node
        self.done = True
        rest = node.items[: self.item] + node.items[self.item + 1 :]
        if rest:
            node.items = rest
            return node
        return node.body


def _code_named(code: CodeType, qualname: str, first: int) -> CodeType | None:
    for const in code.co_consts:
        if isinstance(const, CodeType):
            if const.co_qualname == qualname and const.co_firstlineno == first:
                return const
            found = _code_named(const, qualname, first)
            if found is not None:
                return found
    return None


def _real_function(site: Site, first: int) -> FunctionType | None:
    """The function object `site.outer` is, found through the decorators."""
    obj: object = importlib.import_module(site.module)
    for cls in site.classes:
        obj = vars(obj).get(cls)
    name = site.outer.rsplit(".", 1)[-1]
    raw = vars(obj).get(name) if obj is not None else None
    todo, seen = [raw], 0
    while todo and seen < 20:
        seen += 1
        cand = todo.pop()
        if isinstance(cand, FunctionType):
            if cand.__code__.co_firstlineno == first and cand.__code__.co_name == name:
                return cand
            todo.append(getattr(cand, "__wrapped__", None))
        elif isinstance(cand, (staticmethod, classmethod)):
            todo.append(cand.__func__)
        elif isinstance(cand, property):
            todo += [cand.fget, cand.fset, cand.fdel]
    return None


def _mutate(site: Site, outer: Func) -> LockMutant | Skipped:
    with_node = copy.deepcopy(outer)
    first = with_node.decorator_list[0].lineno if with_node.decorator_list else with_node.lineno
    real = _real_function(site, first)
    if real is None:
        return Skipped(site, f"no function object {site.outer} at line {first} to patch")
    drop = _Drop(site.line, site.col, site.item)
    tree: ast.stmt = drop.visit(with_node)
    for cls in reversed(site.classes):  # the class's name: the same qualname and mangling
        tree = ast.ClassDef(cls, [], [], [tree], [])
    module = ast.fix_missing_locations(ast.Module([tree], []))
    flags = __future__.annotations.compiler_flag
    compiled = compile(module, real.__code__.co_filename, "exec", flags, dont_inherit=True)
    code = _code_named(compiled, real.__code__.co_qualname, real.__code__.co_firstlineno)
    if code is None or not drop.done:
        return Skipped(site, "the recompiled function was not found in its compiled module")
    if code.co_freevars != real.__code__.co_freevars:
        return Skipped(site, f"{site.outer} closes over {real.__code__.co_freevars}")
    return LockMutant(
        name=site.name,
        broken=f"{site.expr} not taken in {site.function}",
        scenario="",
        patches={},
        budget=0,
        site=site,
        function=real,
        code=code,
    )


def generate() -> tuple[list[LockMutant], list[Skipped]]:
    """Every lock site of kernel/ as a mutant, or skipped with the reason; in
    file order, then line order."""
    root = Path(pagemap.kernel.__file__).parent
    mutants: list[LockMutant] = []
    skipped: list[Skipped] = []
    for path in sorted(root.rglob("*.py")):
        rel = PREFIX + path.relative_to(root).as_posix()
        module = "pagemap.kernel." + ".".join(path.relative_to(root).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for site, outer, binds in _file_sites(path, rel, module):
            if binds:
                skipped.append(Skipped(site, "the item binds a name (`as`)"))
                continue
            made = _mutate(site, outer)
            if isinstance(made, Skipped):
                skipped.append(made)
            else:
                mutants.append(made)
    return mutants, skipped


__all__ = ["LOCKLIKE", "LockMutant", "Site", "Skipped", "generate"]

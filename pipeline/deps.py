"""The package's import graph: what a stage runs (its `dvc.yaml` deps are generated from it) and the
rules its layers keep. `python -m pipeline.deps` rewrites the module deps of every stage in dvc.yaml;
`--check` only says whether they are current (a test runs it).

Imports under `if TYPE_CHECKING:` never run and are not edges; lazy imports inside functions are.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pipeline"


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """pipeline.x.y -> pipeline/x/y.py (or its package's __init__.py); None outside the package."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    path = root / Path(*name.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(path: Path, root: Path = ROOT, parents: bool = True) -> set[str]:
    """The package's modules that running `path` imports; `parents`: with the parent packages' __init__,
    which Python runs first (what a stage runs, not an import of the module's own)."""
    package = list(path.relative_to(root).parts[:-1])   # the package the file is in (for __init__.py: its own)
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)   # `from . import io`
    if parents:
        found.update(".".join(package[:i]) for i in range(1, len(package) + 1))
    return {m for m in found if module_file(m, root) is not None}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules it imports, for every module of the package."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        name = module_name(path, root)
        out[name] = {module_name(module_file(m, root), root) for m in imports_of(path, root, parents=False)} - {name}
    return out


def closure(*modules: str, root: Path = ROOT) -> set[Path]:
    """The package's files that importing `modules` runs."""
    todo, seen = list(modules), set()
    while todo:
        path = module_file(todo.pop(), root)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(imports_of(path, root))
    return seen


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


MODULE_DEP = re.compile(r"^(\s+)- (pipeline/\S+\.py)\s*$")


def rewrite(text: str, root: Path = ROOT) -> str:
    """dvc.yaml's text with each stage's module deps replaced by its import closure (sorted); every
    other line (data deps, comments, params, outs) stays as it is."""
    out, stage, in_deps = [], None, False
    lines = text.splitlines(keepends=True)
    for line in lines:
        m_stage = re.match(r"^  ([A-Za-z_]\w*):\s*$", line)
        if m_stage:
            stage, in_deps = m_stage.group(1), False
        elif re.match(r"^    deps:\s*$", line) and stage:
            in_deps = True
            out.append(line)
            needed = sorted(str(p.relative_to(root)) for p in closure(f"{PACKAGE}.stages.{stage}", root=root))
            out.extend(f"      - {p}\n" for p in needed)
            continue
        elif re.match(r"^    \S", line):
            in_deps = False
        if in_deps and MODULE_DEP.match(line):
            continue
        out.append(line)
    return "".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.deps", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml's module deps are stale")
    args = parser.parse_args(argv)
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    new = rewrite(text)
    if args.check:
        if new != text:
            print(f"{path}: module deps are stale; run `python -m pipeline.deps`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new)
        print(f"{path}: module deps rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())

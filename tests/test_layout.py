"""The code's shape: small modules, short functions, no import cycles, tests through public names.

These are the restructure's rules (STYLE.md habits 1 and 16), checked on every run so they stay
true: a module over 400 lines or a function over 60 wants splitting, and a test that reaches into
a private member pins an implementation instead of a behaviour. Tables of data are exempt: a
function or assignment whose body is one literal (a dict of settings, a tuple of phrasings).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "demo"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def library_modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def is_data_table(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function whose body (after its docstring) is one ``return <literal>``."""
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(
        body[0].value, ast.Dict | ast.List | ast.Tuple | ast.Set)


def test_no_module_is_over_400_lines() -> None:
    long = {module_name(p): n for p in library_modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in [*library_modules(), ROOT / "app.py"]:
        for fn in functions(ast.parse(path.read_text())):
            n = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if n > MAX_FUNCTION_LINES and not is_data_table(fn):
                long[f"{module_name(path)}:{fn.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The demo modules ``path`` imports (``from demo.x import y`` names demo.x, or demo.x.y when
    that is a module); with ``top_level_only``, only imports made when the module is loaded."""
    tree = ast.parse(path.read_text())
    nodes = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` imports load nothing
            continue
        nodes.append(node)
    names = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("demo"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if _is_module(sub) else node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("demo")}
    return names


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_no_import_cycles() -> None:
    graph = {module_name(p): imports(p, top_level_only=True) for p in library_modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_tests_use_public_names_only() -> None:
    """No test reads or patches ``obj._private`` (dunder names are fine; so is a test's own helper)."""
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        tree = ast.parse(path.read_text())
        own = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", *own))):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_")
                    and not node.args[1].value.startswith("__")):
                found.append(f"{path.name}:{node.lineno} patches {node.args[1].value}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("demo"):
                found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, f"tests reaching into private members: {found}"


def test_the_ui_and_the_bench_keep_to_their_side() -> None:
    """The page calls the service, not evaluation internals; the bench measures, it does not train."""
    for name in ("ui.py", "format.py", "header.py"):  # the page; service.py and its helpers may evaluate
        path = LIBRARY / "app" / name
        reached = {m for m in imports(path, top_level_only=False) if m.startswith("demo.evaluate")}
        assert not reached, f"{module_name(path)} imports {reached}; go through demo.app.service"
    for path in sorted((LIBRARY / "bench").glob("*.py")):
        reached = {m for m in imports(path, top_level_only=False) if m.startswith("demo.train")}
        assert not reached, f"{module_name(path)} imports {reached}"


def reached_from(starts: list[Path]) -> dict[str, str]:
    """Every demo module the ``starts`` import, directly or through others, counting imports made
    inside functions too; each mapped to the module that first imports it."""
    by_name = {module_name(p): p for p in library_modules()}
    seen: dict[str, str] = {}
    todo = [(module_name(p) if p.is_relative_to(LIBRARY) else p.name, p) for p in starts]
    while todo:
        name, path = todo.pop()
        for child in sorted(imports(path, top_level_only=False)):
            parts = child.split(".")
            # importing demo.a.b runs demo/__init__ and demo/a/__init__ first
            for depth in range(2, len(parts) + 1):
                module = ".".join(parts[:depth])
                if module in by_name and module not in seen:
                    seen[module] = name
                    todo.append((module, by_name[module]))
    return seen


def test_serving_never_imports_training() -> None:
    """The app (app.py, demo.app), the search path and the index reach nothing in demo.train, not even
    through an import inside a function (STYLE habit 19): training stays behind the CLI."""
    serving = [ROOT / "app.py", *sorted((LIBRARY / "app").glob("*.py")), *sorted((LIBRARY / "search").glob("*.py"))]
    reached = reached_from(serving)
    training = {m: via for m, via in reached.items() if m == "demo.train" or m.startswith("demo.train.")}
    assert not training, f"serving reaches training: {training}"
    assert "demo.search.searcher" in reached and "demo.index.video_index" in reached  # the walk does walk

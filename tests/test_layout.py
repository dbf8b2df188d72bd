"""The shape of src/gptlab: imports go one way, between files and between top-level packages (imports inside
functions count: they only postpone the knot), and functions stay short enough to read.

Read from the source with `ast`, never by importing it.
"""

import ast
import re
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_FUNCTION_LINES = 80
ARGUMENT_REGISTRATION = re.compile(r"_?(register|add_\w*arguments)")
"""Functions that only declare a verb's flags, one call a flag: the one kind allowed past MAX_FUNCTION_LINES."""

Graph = dict[str, set[str]]


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of gptlab (a package is its __init__.py)."""
    found = {}
    for path in sorted((src / "gptlab").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The gptlab modules that module `name` imports anywhere in its file, relative imports resolved; a name
    imported from a module counts as that module, a submodule imported from a package as the submodule."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    resolved = {_nearest_module(target, known) for target in targets}
    # A module's own package is initialised before it runs: importing from it adds no edge.
    return {t for t in resolved if t and t != name and t != package}


def _nearest_module(name: str, known: dict[str, Path]) -> str:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name if name.startswith("gptlab") else ""


def file_graph(src: Path = SRC) -> Graph:
    known = modules(src)
    return {name: imported(name, path, known) for name, path in known.items()}


def top_level(module: str) -> str:
    """gptlab.checkpoint.io -> checkpoint; gptlab.files -> files; gptlab itself stays gptlab."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(files: Graph) -> Graph:
    graph: Graph = defaultdict(set)
    for module, targets in files.items():
        graph[top_level(module)].update(top_level(t) for t in targets if top_level(t) != top_level(module))
    return dict(graph)


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle, as the nodes along it, for each knot of `graph` (a strongly connected set of two or more
    nodes): empty when imports go one way."""
    found = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            found.append(_cycle_through(min(component), graph, component))
    return sorted(found)


def _strongly_connected(graph: Graph) -> list[set[str]]:
    """Tarjan's algorithm, iterative (an import chain can be deeper than Python's recursion limit allows)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _cycle_through(start: str, graph: Graph, component: set[str]) -> list[str]:
    """The shortest path from `start` back to itself inside its component (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ()) & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is in no cycle of its component")  # unreachable for a real component


def describe(cycle: list[str], files: Graph | None = None) -> str:
    """`a -> b -> a`, with the file imports behind each step when `cycle` is of packages."""
    steps = []
    for a, b in zip(cycle, [*cycle[1:], cycle[0]]):
        if files is None:
            steps.append(f"{a} -> {b}")
        else:
            why = sorted(f"{m} imports {t}" for m, ts in files.items() for t in ts if top_level(m) == a and top_level(t) == b)
            steps.append(f"{a} -> {b} ({'; '.join(why[:3])}{' ...' if len(why) > 3 else ''})")
    return "\n  ".join(steps)


def long_functions(src: Path = SRC) -> list[str]:
    """`file:line name (N lines)` for each function or method longer than MAX_FUNCTION_LINES, argument
    registration aside."""
    found = []
    for path in sorted((src / "gptlab").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not ARGUMENT_REGISTRATION.fullmatch(node.name):
                    found.append(f"{path.relative_to(src)}:{node.lineno} {node.name} ({length} lines)")
    return found


# --- the rules ------------------------------------------------------------------------------------


def test_no_import_cycle_between_files_or_packages():
    files = file_graph()
    knots = [describe(c) for c in cycles(files)] + [describe(c, files) for c in cycles(package_graph(files))]
    assert not knots, "import cycles:\n  " + "\n\n  ".join(knots)


def test_no_function_longer_than_80_lines_but_argument_registration():
    too_long = long_functions()
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(too_long)


def test_checkpoints_finetuning_data_and_tokenizers_import_one_way():
    """The knots untied so far stay untied: the checkpoint layers, task heads beside the model, the document
    reader below data and tokenizer training."""
    files = file_graph()
    untied = {"checkpoint", "finetune", "eval", "model", "data", "tokenizer", "sources", "files"}
    knots = [c for c in cycles(files) if any(top_level(m) in untied for m in c)]
    knots += [c for c in cycles(package_graph(files)) if untied & set(c)]
    assert not knots, "import cycles:\n  " + "\n  ".join(describe(c) for c in knots)


# --- the checker itself, on made-up packages --------------------------------------------------------


def write_package(root: Path, sources: dict[str, str]) -> Path:
    for name, text in sources.items():
        path = root / "gptlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cycles_are_found_through_local_and_relative_imports(tmp_path):
    src = write_package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/low.py": "def f():\n    from ..b import high\n",  # local and relative: still an import
        "a/top.py": "from gptlab.a import low\n",
        "b/__init__.py": "",
        "b/high.py": "from gptlab.a.top import thing\n",
        "c.py": "import gptlab.a.low\n",
    })
    files = file_graph(src)
    assert files["gptlab.a.low"] == {"gptlab.b.high"} and files["gptlab.a.top"] == {"gptlab.a.low"}
    assert cycles(files) == [["gptlab.a.low", "gptlab.b.high", "gptlab.a.top"]]
    assert cycles(package_graph(files)) == [["a", "b"]]
    assert "a -> b (gptlab.a.low imports gptlab.b.high)" in describe(["a", "b"], files)


def test_one_way_imports_have_no_cycle(tmp_path):
    src = write_package(tmp_path, {
        "__init__.py": "from gptlab.b import x\n",
        "a/__init__.py": "from . import low\n",  # a package importing its own module is no cycle
        "a/low.py": "from gptlab.a import thing\nfrom gptlab import files\n",
        "b/__init__.py": "",
        "b/x.py": "from gptlab.a.low import y\n",
        "files.py": "",
    })
    assert cycles(file_graph(src)) == [] and cycles(package_graph(file_graph(src))) == []


def test_long_functions_are_named_unless_they_register_arguments(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    module = f"def long():\n{body}\ndef register():\n{body}\ndef short():\n    pass\n"
    src = write_package(tmp_path, {"__init__.py": "", "m.py": module})
    assert long_functions(src) == [f"gptlab/m.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]

"""The layout rules: no import cycle in mlib (function-level imports included), an import-free catalogue,
notebooks that define no functions, and one study module per notebook."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mlib import catalogue, reproduce
from mlib.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "mlib"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every mlib module ``path`` imports, at any depth (module-level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != "mlib":
                found.add(name)
    return found


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles (strongly connected components with more than one module)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_anywhere_in_mlib():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "module, allowed",
    [
        ("mlib.catalogue", set()),
        ("mlib.published", set()),
        ("mlib.params", {"mlib.catalogue"}),
    ],
)
def test_vocabulary_modules_import_nothing_else_from_mlib(module, allowed):
    assert GRAPH[module] == allowed


def test_checking_parameters_loads_neither_torch_nor_dgl():
    code = (
        "import sys; from mlib import params; params.build('05_federated', {'out_dir': 'x'}); "
        "print(sorted(m for m in ('torch', 'dgl', 'pymatgen') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", reproduce.notebooks(), ids=lambda p: p.stem)
def test_notebooks_define_no_functions_and_call_their_study_module(path: Path):
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    tree = ast.parse(source)
    defined = [
        n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
    ]
    assert not defined, f"{path.name} defines {[getattr(n, 'name', 'lambda') for n in defined]}"
    imported = {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert any(name.startswith("mlib.study.") for name in imported), "a notebook calls its study module"


def test_every_notebook_has_a_study_module_and_declared_prerequisites():
    stems = [p.stem for p in reproduce.notebooks()]
    assert stems == list(catalogue.NOTEBOOKS)
    for stem in stems:
        for needed in catalogue.NOTEBOOKS[stem]:
            assert stems.index(needed) < stems.index(stem)
    study = {p.stem for p in (PACKAGE / "study").glob("*.py") if p.stem != "__init__"}
    assert study == {f"nb{stem}" for stem in stems}, "one study module per notebook, named after it"


@pytest.mark.parametrize("path", reproduce.notebooks(), ids=lambda p: p.stem)
def test_a_notebook_imports_its_own_study_module(path: Path):
    tree = ast.parse("\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"))
    studies = {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert {m for m in studies if m.startswith("mlib.study.")} == {f"mlib.study.nb{path.stem}"}


def test_no_two_modules_or_packages_share_a_name():
    """A name says its layer: ``from mlib import sweep`` and a study's ``sweep`` cannot be confused."""
    names = [p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    names += [p.name for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").exists() and p != PACKAGE]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


def test_no_test_only_code_ships_in_mlib():
    assert not [name for name in MODULES if "test" in name.rpartition(".")[2]]
    assert not [p for p in PACKAGE.rglob("*.py") if "loopback" in p.read_text()]


def test_flower_apps_import_the_task_never_each_other():
    client, server = GRAPH["mlib.federated.client_app"], GRAPH["mlib.federated.server_app"]
    assert "mlib.federated.task" in client and "mlib.federated.task" in server
    assert "mlib.federated.server_app" not in client and "mlib.federated.client_app" not in server
    assert "mlib.federated.strategy" in server


def readme_layers() -> list[tuple[str, set[str]]]:
    """The README's Architecture table: (layer, the mlib modules it names), lowest layer first. A name ending in
    ``/`` stands for a package and everything in it."""
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("## Architecture") :].split("\n\n")[2]
    layers = []
    for line in table.splitlines()[2:]:
        name, modules = (cell.strip() for cell in line.strip("|").split("|")[:2])
        names = set()
        for token in re.findall(r"`([^`]+)`", modules):
            if token.endswith("/"):
                names |= {m for m in MODULES if m == f"mlib.{token[:-1]}" or m.startswith(f"mlib.{token[:-1]}.")}
            elif token.endswith(".py"):
                names.add(f"mlib.{token[:-3]}")
        layers.append((name, names))
    return layers


def test_the_readme_s_layers_hold_in_the_code():
    layers = readme_layers()
    assert [name for name, _ in layers][:2] == ["vocabulary", "foundation"] and len(layers) >= 6
    level = {}
    for rank, (_name, modules) in enumerate(layers):
        for module in modules:
            assert module in MODULES, f"the README names {module}, which does not exist"
            assert module not in level, f"{module} is in two layers"
            level[module] = rank
    unplaced = sorted(set(MODULES) - set(level) - {"mlib"})
    assert not unplaced, f"modules in no layer of the README's table: {unplaced}"
    upward = [
        f"{module} ({layers[level[module]][0]}) imports {other} ({layers[level[other]][0]})"
        for module, imported in GRAPH.items()
        if module in level
        for other in imported
        if other in level and level[other] > level[module]
    ]
    assert not upward, upward

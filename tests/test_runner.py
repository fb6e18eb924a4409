"""The runner and the parameter schemas: fail fast, with messages that name the problem."""

import textwrap
from pathlib import Path

import nbformat
import pytest

from mlib import catalogue, params, profiles, reproduce
from mlib.paths import NOTEBOOK_DIR


def test_plan_resolves_profile_overrides_and_out_dir(tmp_path):
    ((nb, out_dir, values),) = reproduce.plan("smoke", ["01"], {"radius": 6.0}, tmp_path)
    assert nb.stem == "01_data" and out_dir == tmp_path / "smoke" / "01_data"
    assert values["radius"] == 6.0 and values["profile"] == "smoke" and values["mp_limit"] == 300


@pytest.mark.parametrize(
    "args, message",
    [
        (("nope", None, {}), "unknown profile 'nope'"),
        (("smoke", ["99_missing"], {}), "unknown notebook '99_missing'"),
        (("smoke", None, {"raduis": 6.0}), r"unknown parameter\(s\) \['raduis'\]"),
    ],
)
def test_plan_rejects_unknown_names(tmp_path, args, message):
    with pytest.raises(reproduce.RunnerError, match=message):
        reproduce.plan(*args, tmp_path)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"radius": -1.0}, "radius must be > 0"),
        ({"workers": "two"}, "expected int"),
        ({"thermal_datasets": ["aflw"]}, "unknown thermal data set"),
        ({"aflow_source": "web"}, "unknown aflow_source"),
        ({"dataset": "icsd"}, "unknown data set 'icsd'"),
        ({"batch_size": 0}, "batch_size must be > 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"mp_target": "bulk_modulus"}, "unknown MP target"),
        ({"compare": ["lr_schedule=cosine"]}, "compare entry 'lr_schedule=cosine': write name=value"),
        ({"compare": ["lr_schedule=step"]}, "is the notebook's own setting"),
        ({"atom_features": "magpie"}, "unknown atom-feature source"),
        ({"tie_order": "random"}, "unknown tie order"),
        ({"ensemble_seeds": [0, 0]}, "ensemble_seeds must be distinct"),
        ({"ensemble_seeds": [3]}, "an ensemble needs two members or more"),
        ({"seeds": [1, 2]}, "seed 0 is not one of seeds"),
        ({"architectures": ["cgcnn"]}, "'cgcnn' is not one of"),
        ({"architecture_splits": {"m3gnet": [0]}}, "which is not in architectures"),
        ({"architecture_splits": {"gcn": [1]}}, "must be a list of seeds"),
        ({"architecture_lrs": [0.01, -1.0]}, "architecture_lrs must be positive"),
    ],
)
def test_bad_values_fail_before_any_notebook_runs(tmp_path, override, message):
    with pytest.raises(params.ParameterError, match=message):
        reproduce.plan("smoke", None, override, tmp_path)


def test_main_exits_2_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--profile", "nope"])
    assert info.value.code == 2
    assert "unknown profile 'nope'" in capsys.readouterr().err


def test_overrides_are_read_as_yaml():
    assert reproduce.parse_overrides(["a=1", "b=0.5", "c=null", "d=[x, y]", "e=true"]) == {
        "a": 1,
        "b": 0.5,
        "c": None,
        "d": ["x", "y"],
        "e": True,
    }
    with pytest.raises(reproduce.RunnerError):
        reproduce.parse_overrides(["novalue"])


def test_every_profile_builds_valid_parameters(tmp_path):
    for profile in profiles.names():
        assert reproduce.plan(profile, None, {}, tmp_path)


@pytest.mark.parametrize("path", reproduce.notebooks(), ids=lambda p: p.stem)
def test_committed_notebooks_are_clean_and_declare_their_schema(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one papermill parameters cell"
    assert tagged[0].source == params.parameters_cell(path.stem), "run: python -m mlib.reproduce --sync-cells"
    assert f'params.check("{path.stem}", globals())' in "".join(c.source for c in code)


def test_notebook_dir_has_numbered_notebooks():
    assert [p.stem for p in reproduce.notebooks()][:1] == ["01_data"]
    assert NOTEBOOK_DIR.is_dir()


def test_a_finished_notebooks_kernel_is_shut_down_without_an_interrupt(monkeypatch):
    import asyncio

    from jupyter_client import AsyncKernelManager

    # jupyter_client interrupts before it asks a kernel to shut down: the runner's manager drops that SIGINT
    sent = []

    async def interrupt(self):
        sent.append(self.shutting_down)

    monkeypatch.setattr(AsyncKernelManager, "_async_interrupt_kernel", interrupt)
    manager = reproduce.quiet_kernel_manager()()
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())
    manager.shutting_down = False
    asyncio.run(manager._async_interrupt_kernel())  # an interrupt asked for while a cell runs still goes through
    assert sent == [False]


def test_outside_a_terminal_progress_prints_a_line_per_step(capsys, monkeypatch):
    from mlib import progress

    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert list(progress.track(range(3), 3, "runs", unit="run", steps=3)) == [0, 1, 2]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "runs: 0/3 run (starting)" and [line.split(" in ")[0] for line in lines[1:]] == [
        "runs: 1/3 run",
        "runs: 2/3 run",
        "runs: 3/3 run",
    ]
    list(progress.track(range(100), 100, "epochs"))  # the default: a line at each quarter
    assert len(capsys.readouterr().out.splitlines()) == 1 + 4


def _reads(source: str, owner: str) -> set[str]:
    """Attributes read from ``owner`` (``P`` or ``self``) in ``source``, outside ``validate`` methods."""
    import ast

    tree = ast.parse(source)
    skipped = {
        id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "validate" for n in ast.walk(f)
    }
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == owner
        and id(node) not in skipped
    }


@pytest.mark.parametrize("notebook", list(catalogue.NOTEBOOKS))
def test_every_parameter_a_notebook_accepts_is_read_and_every_one_it_reads_is_declared(notebook):
    """No parameter is accepted, recorded and ignored: each is read by the notebook's study module (or the study
    modules it calls, or a method of its parameter class that those call); and each ``P.<name>`` the module reads
    exists (a parameter removed from a notebook is removed from its code)."""
    import importlib
    import inspect
    import re

    module = inspect.getsource(importlib.import_module(f"mlib.study.nb{notebook}"))
    helpers = re.findall(r"from mlib\.study import (\w+)", module)
    sources = [module, *(inspect.getsource(importlib.import_module(f"mlib.study.{h}")) for h in helpers)]
    cls = params.params_class(notebook)
    read = set().union(*(_reads(s, "P") for s in sources))
    methods = {name for name in read if callable(getattr(cls, name, None))}
    for klass in cls.__mro__:
        for name in methods & set(vars(klass)):
            read |= _reads(textwrap.dedent(inspect.getsource(vars(klass)[name])), "self")
    unread = params.names(notebook) - set(params.RUNNER_OWNED) - read
    assert not unread, f"{notebook} accepts {sorted(unread)} but never reads them"
    undeclared = {n for n in _reads(module, "P") if not hasattr(cls, n) and n not in params.names(notebook)}
    assert not undeclared, f"{notebook}'s module reads P.{sorted(undeclared)}, which it does not declare"


@pytest.mark.parametrize("name", ["seed", "radius", "max_neighbors", "tie_order"])
def test_a_parameter_a_notebook_does_not_use_is_refused_not_recorded(tmp_path, name):
    value = {"seed": 1, "radius": 6.0, "max_neighbors": 8, "tie_order": "index"}[name]
    with pytest.raises(reproduce.RunnerError, match=rf"unknown parameter\(s\) \['{name}'\] for \['04b_models'\]"):
        reproduce.plan("smoke", ["04b_models"], {name: value}, tmp_path)

"""Which module may import which: the rule of ARCHITECTURE.md, checked on the source.

The imports are read from the AST of every module in ``fracdet/`` and ``data_tools/``, those
inside functions and ``TYPE_CHECKING`` blocks included (a lazy import is still a dependency),
so the rule holds whichever code path runs. Three checks:

(a) nothing but ``fracdet.__main__`` imports the ``fracdet.cli`` package or any of its modules
    (the CLI is a door, not a library; its own modules import each other), and nothing but the
    CLI imports its option declarations (``fracdet.cli_options``);
(b) no import cycle between fracdet's top-level units (``fracdet.cls``, ``fracdet.report``, ...),
    nor between modules inside a unit (``fracdet.cls.model`` <-> ``fracdet.cls.robustbench``);
(c) layers: a unit imports only its own layer or lower ones; ``cls`` and ``det`` never import
    each other; ``data_tools`` imports ``fracdet.data`` and lower, never the CLI.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fracdet", "data_tools")

#: Layer of each top-level unit: a unit may import units of its own layer or lower ones.
#: The root package ``fracdet`` holds only ``__version__`` and runs before any of its
#: submodules, so it sits at the bottom.
LAYERS: dict[str, int] = {
    "fracdet": 0,
    "fracdet.errors": 0,
    "fracdet.log": 0,
    "fracdet.fsutil": 0,
    "fracdet.config": 0,
    "fracdet.provenance": 0,
    "fracdet.runtime": 0,
    "fracdet.nnutil": 0,
    "fracdet.resample": 0,
    "fracdet.confusion": 0,
    "fracdet.jobs": 0,
    "fracdet.stages": 0,
    "fracdet.profiles": 0,
    "fracdet.data": 1,
    "fracdet.report": 2,
    "fracdet.robust": 3,
    "fracdet.explain": 3,
    "fracdet.cls": 4,
    "fracdet.det": 4,
    "fracdet.mae": 4,
    "fracdet.audit": 5,
    "fracdet.predict": 5,
    "fracdet.export": 5,
    "fracdet.pipeline": 6,
    "fracdet.demo": 6,
    "fracdet.demo_report": 6,
    "fracdet.study": 6,
    "data_tools": 6,
    "fracdet.cli": 7,
    "fracdet.cli_options": 7,
    "fracdet.__main__": 7,
}
#: Units that may reach less far down than their layer would allow: ``data_tools`` sits
#: beside the demo (which uses it) but builds on the data layer only.
CEILINGS: dict[str, int] = {"data_tools": LAYERS["fracdet.data"]}
#: Same-layer pairs that must stay apart: the two tracks meet only in audit/predict; ``mae``
#: builds on the classification track (its encoder reaches cls as a weights file, not an import).
FORBIDDEN: frozenset[tuple[str, str]] = frozenset(
    {
        ("fracdet.cls", "fracdet.det"),
        ("fracdet.det", "fracdet.cls"),
        ("fracdet.cls", "fracdet.mae"),
        ("fracdet.mae", "fracdet.det"),
        ("fracdet.det", "fracdet.mae"),
    }
)
CLI = "fracdet.cli"
CLI_IMPORTERS = frozenset({"fracdet.__main__"})
#: Units that belong to the CLI alone (its option declarations): only the CLI imports them.
CLI_PRIVATE = frozenset({"fracdet.cli_options"})

#: Edges (importing module, imported module) allowed to break the rule while a fix is under
#: way. The test fails on any edge not listed, and on a listed edge that no longer exists,
#: so the list cannot go stale. Empty: keep it so.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()
#: Module edges (importer, imported) that close a known module-level cycle while its fix is
#: under way; the cycle test skips them and fails on a listed edge that no longer exists.
#: Empty: keep it so.
KNOWN_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Rules:
    """The import rule: layers, per-unit ceilings, forbidden pairs and the CLI's importers.

    Under a root package each child (``fracdet.cls``) is a unit; any other package
    (``data_tools``) is one unit as a whole.
    """

    roots: frozenset[str]
    layers: Mapping[str, int]
    ceilings: Mapping[str, int]
    forbidden: frozenset[tuple[str, str]]
    cli: str
    cli_importers: frozenset[str]
    cli_private: frozenset[str] = frozenset()


RULES = Rules(frozenset({"fracdet"}), LAYERS, CEILINGS, FORBIDDEN, CLI, CLI_IMPORTERS, CLI_PRIVATE)


def module_names(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` under each package folder."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The known module ``name`` lives in (longest known prefix), or None when outside."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imported_modules(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Known modules that ``module`` imports anywhere in its file (functions included)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the module pkg.sub when it is one, else a name of pkg.
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
            names = [n for n in names[:-1] if n in modules] or [base]
        else:
            continue
        found.update(target for n in names if (target := _resolve(n, modules)) is not None)
    found.discard(module)
    return found


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    """Module -> the known modules it imports."""
    modules = module_names(root, packages)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def unit_of(module: str, roots: frozenset[str]) -> str:
    """The top-level unit of a module: ``root.child`` under a root package, else its package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in roots else parts[0]


def unit_graph(
    graph: Mapping[str, set[str]],
    roots: frozenset[str],
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> dict[str, set[str]]:
    """Unit -> units it imports, leaving out module edges in ``skip`` and self-edges."""
    units: dict[str, set[str]] = {}
    for source, targets in graph.items():
        edges = units.setdefault(unit_of(source, roots), set())
        edges.update(unit_of(t, roots) for t in targets if (source, t) not in skip)
    for unit, edges in units.items():
        edges.discard(unit)
    return units


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None; deterministic (sorted) order."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def module_graph(
    graph: Mapping[str, set[str]], skip: frozenset[tuple[str, str]] = frozenset()
) -> dict[str, set[str]]:
    """Module -> modules it imports, leaving out the edges in ``skip``.

    A package's ``__init__`` is a module like the others: a submodule importing its own
    package while the package imports it back is a cycle too.
    """
    return {
        source: {t for t in targets if (source, t) not in skip} for source, targets in graph.items()
    }


def unlayered_units(graph: Mapping[str, set[str]], rules: Rules) -> list[str]:
    """Units with no layer: a new top-level module must be placed before it can pass."""
    return sorted({unit_of(m, rules.roots) for m in graph} - set(rules.layers))


def cli_importers(graph: Mapping[str, set[str]], rules: Rules) -> set[tuple[str, str]]:
    """Edges into the CLI from anything but its allowed importers, and into the CLI's private
    units (its option declarations) from anything but the CLI."""
    allowed = {rules.cli: rules.cli_importers | {rules.cli}}
    allowed.update({unit: rules.cli_private | {rules.cli} for unit in rules.cli_private})
    return {
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if (dst := unit_of(target, rules.roots)) in allowed
        and unit_of(source, rules.roots) not in allowed[dst]
    }


def layer_violations(graph: Mapping[str, set[str]], rules: Rules) -> dict[tuple[str, str], str]:
    """Module edges that break the layers, each with a line saying why."""
    found: dict[tuple[str, str], str] = {}
    for source, targets in graph.items():
        src = unit_of(source, rules.roots)
        if src not in rules.layers:
            continue
        ceiling = rules.ceilings.get(src, rules.layers[src])
        for target in targets:
            dst = unit_of(target, rules.roots)
            if dst == src or dst not in rules.layers:
                continue
            if rules.layers[dst] > ceiling:
                found[(source, target)] = (
                    f"{src} (L{rules.layers[src]}, may import up to L{ceiling})"
                    f" imports {dst} (L{rules.layers[dst]})"
                )
            elif (src, dst) in rules.forbidden:
                found[(source, target)] = f"{src} and {dst} must not import each other"
    return found


def describe(edges: Mapping[tuple[str, str], str] | Iterable[tuple[str, str]]) -> str:
    items = edges.items() if isinstance(edges, Mapping) else ((e, "") for e in edges)
    return "\n".join(f"  {s} -> {t}" + (f": {why}" if why else "") for (s, t), why in sorted(items))


# ----------------------------------------------------------------------------- the real code


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, PACKAGES)


def test_the_graph_is_read(graph):
    # Guards the checker against reading nothing: known edges of the real code are present.
    assert "fracdet.cli" in graph["fracdet.__main__"]
    assert "fracdet.data.formats" in graph["data_tools.phantoms"]
    assert "fracdet.config" in graph["fracdet.cli.train"]  # imported inside the commands only
    assert "fracdet.cli_options.train" in graph["fracdet.cli.train"]
    assert {"fracdet.cli.train", "fracdet.cli.inference"} <= graph["fracdet.cli"]


def test_every_unit_has_a_layer(graph):
    missing = unlayered_units(graph, RULES)
    assert not missing, (
        f"units with no layer (add them to LAYERS in {Path(__file__).name}): {', '.join(missing)}"
    )


def test_nothing_but_main_imports_the_cli(graph):
    bad = cli_importers(graph, RULES)
    assert not bad, (
        "only fracdet.__main__ may import the CLI, and only the CLI its options; found:\n"
        + describe(bad)
    )


def test_no_cycle_between_units(graph):
    # Known violations are tracked (and made to go away) by the layer test; without them the
    # units must form a DAG.
    cycle = find_cycle(unit_graph(graph, RULES.roots, skip=KNOWN_VIOLATIONS))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_cycle_between_modules(graph):
    # Inside a unit too: a cycle between two modules of one package means neither can be
    # read, tested or imported on its own (and lazy imports only hide it).
    cycle = find_cycle(module_graph(graph, skip=KNOWN_CYCLE_EDGES | KNOWN_VIOLATIONS))
    assert cycle is None, "import cycle between modules: " + " -> ".join(cycle or [])
    gone = {edge for edge in KNOWN_CYCLE_EDGES if edge[1] not in graph.get(edge[0], set())}
    assert not gone, (
        f"fixed, remove from KNOWN_CYCLE_EDGES in {Path(__file__).name}:\n{describe(gone)}"
    )


def test_layers(graph):
    found = layer_violations(graph, RULES)
    new = {edge: why for edge, why in found.items() if edge not in KNOWN_VIOLATIONS}
    gone = KNOWN_VIOLATIONS - found.keys()
    assert not new, f"imports that break the layers of ARCHITECTURE.md:\n{describe(new)}"
    assert not gone, (
        f"fixed, remove from KNOWN_VIOLATIONS in {Path(__file__).name}:\n{describe(gone)}"
    )


# ----------------------------------------------------------------------------- the checker


def write_package(root: Path, files: Mapping[str, str]) -> Path:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


FAKE_RULES = Rules(
    roots=frozenset({"pkg"}),
    layers={
        "pkg": 0,
        "pkg.base": 0,
        "pkg.mid": 1,
        "pkg.a": 2,
        "pkg.b": 2,
        "pkg.cli": 3,
        "pkg.cli_opts": 3,
        "pkg.__main__": 3,
        "tools": 3,
    },
    ceilings={"tools": 1},
    forbidden=frozenset({("pkg.a", "pkg.b"), ("pkg.b", "pkg.a")}),
    cli="pkg.cli",
    cli_importers=frozenset({"pkg.__main__"}),
    cli_private=frozenset({"pkg.cli_opts"}),
)


def fake_graph(root: Path, files: Mapping[str, str]) -> dict[str, set[str]]:
    base = {
        "pkg/__init__.py": "",
        "pkg/base.py": "",
        "pkg/mid/__init__.py": "",
        "tools/__init__.py": "",
    }
    return import_graph(write_package(root, {**base, **files}), ("pkg", "tools"))


def test_checker_reads_every_import_form(tmp_path):
    graph = fake_graph(
        tmp_path,
        {
            "pkg/mid/core.py": "from . import helpers\nfrom ..base import X\nimport os\n",
            "pkg/mid/helpers.py": "def f():\n    import pkg.base as b\n    from pkg import mid\n",
            "pkg/a.py": "from pkg.mid.core import thing\nfrom pkg import base, mid\n",
        },
    )
    assert graph["pkg.mid.core"] == {"pkg.mid.helpers", "pkg.base"}
    assert graph["pkg.mid.helpers"] == {"pkg.base", "pkg.mid"}  # inside a function
    assert graph["pkg.a"] == {"pkg.mid.core", "pkg.base", "pkg.mid"}
    assert (
        layer_violations(graph, FAKE_RULES) == {}
        and find_cycle(unit_graph(graph, FAKE_RULES.roots)) is None
    )


def test_checker_finds_a_cycle_and_names_its_path(tmp_path):
    graph = fake_graph(
        tmp_path,
        {
            "pkg/a.py": "import pkg.b\n",
            "pkg/b.py": "def f():\n    from pkg.mid import x\n",
            "pkg/mid/x.py": "from pkg.a import y\n",
        },
    )
    cycle = find_cycle(unit_graph(graph, FAKE_RULES.roots))
    assert cycle == ["pkg.a", "pkg.b", "pkg.mid", "pkg.a"]
    # Skipping the edge that closes it leaves no cycle.
    assert (
        find_cycle(unit_graph(graph, FAKE_RULES.roots, skip=frozenset({("pkg.mid.x", "pkg.a")})))
        is None
    )


def test_checker_finds_a_cycle_inside_a_unit(tmp_path):
    # Between two modules of one package (a lazy import inside a function included): the
    # unit graph sees nothing, the module graph names the cycle.
    graph = fake_graph(
        tmp_path,
        {
            "pkg/mid/model.py": "def build():\n    from pkg.mid.zoo import make\n",
            "pkg/mid/zoo.py": "from pkg.mid.model import helper\n",
            "pkg/mid/io.py": "",
        },
    )
    assert find_cycle(unit_graph(graph, FAKE_RULES.roots)) is None
    assert find_cycle(module_graph(graph)) == ["pkg.mid.model", "pkg.mid.zoo", "pkg.mid.model"]
    assert (
        find_cycle(module_graph(graph, skip=frozenset({("pkg.mid.zoo", "pkg.mid.model")}))) is None
    )


def test_checker_finds_layer_violations(tmp_path):
    graph = fake_graph(
        tmp_path,
        {
            "pkg/mid/x.py": "from pkg.a import y\n",  # up a layer
            "pkg/a.py": "from pkg.b import z\n",  # same layer but forbidden
            "pkg/b.py": "from pkg.base import q\n",  # fine
            # above its ceiling; within it
            "tools/t.py": "from pkg import a\nfrom pkg.mid import x\n",
            "pkg/__main__.py": "from pkg.cli import run\n",  # the one allowed CLI importer
            "pkg/cli.py": "from pkg import a, b\n",
        },
    )
    found = layer_violations(graph, FAKE_RULES)
    assert set(found) == {("pkg.mid.x", "pkg.a"), ("pkg.a", "pkg.b"), ("tools.t", "pkg.a")}
    assert (
        "may import up to L1" in found[("tools.t", "pkg.a")]
        and "must not import" in found[("pkg.a", "pkg.b")]
    )
    assert cli_importers(graph, FAKE_RULES) == set()


def test_checker_finds_cli_importers_and_unlayered_units(tmp_path):
    graph = fake_graph(
        tmp_path,
        {
            "pkg/cli/__init__.py": "from pkg.cli import cmds\n",  # the CLI is a package
            # allowed: the CLI's own options, and its modules import each other
            "pkg/cli/cmds.py": "from pkg.cli_opts.train import Train\nfrom pkg.cli.edge import e\n",
            "pkg/cli/edge.py": "",
            "pkg/cli_opts/__init__.py": "",
            "pkg/cli_opts/train.py": "from pkg.cli_opts import Shared\n",  # within the unit
            "tools/gen.py": "def main():\n    from pkg.cli import app\n",
            "pkg/a.py": "from pkg.cli_opts.train import Train\n",  # not the CLI
            "pkg/b.py": "def f():\n    from pkg.cli.edge import e\n",  # a module of the CLI
            "pkg/extra.py": "",
        },
    )
    assert graph["pkg.cli.cmds"] == {"pkg.cli_opts.train", "pkg.cli.edge"}
    assert cli_importers(graph, FAKE_RULES) == {
        ("tools.gen", "pkg.cli"),
        ("pkg.a", "pkg.cli_opts.train"),
        ("pkg.b", "pkg.cli.edge"),
    }
    assert unlayered_units(graph, FAKE_RULES) == ["pkg.extra"]

"""The package's layers, read from the code: every import (module level, in a function, under
TYPE_CHECKING) points down the declared order or within its own group, and no import circle exists.

A module may import its own group and any group of a lower layer; groups of one layer are peers
that do not import each other. Package faces (`__init__`, `__main__`) of the two top-level packages
sit above everything they re-export.
"""
from __future__ import annotations

import ast
import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"lewm_agent": ROOT / "lewm_agent", "lewm_envs": ROOT / "envs"}

# Lowest first; each layer a tuple of peer groups (a group is a module or a package prefix).
LAYERS: list[tuple[str, ...]] = [
    ("lewm_envs.registry",),
    ("lewm_envs.experts",),
    ("lewm_envs.base",),
    ("lewm_envs.pusht", "lewm_envs.two_room", "lewm_envs.cube"),
    ("lewm_envs",),  # the face: registration and the helpers above
    ("lewm_agent.version", "lewm_agent.flags", "lewm_agent.config", "lewm_agent.device", "lewm_agent.precision",
     "lewm_agent.progress", "lewm_agent.lock", "lewm_agent.runlog", "lewm_agent.distributed",
     "lewm_agent.threads"),
    ("lewm_agent.data", "lewm_agent.model"),
    ("lewm_agent.checkpoint",),
    ("lewm_agent.interop",),
    ("lewm_agent.planning",),
    ("lewm_agent.training", "lewm_agent.evaluation"),
    ("lewm_agent.cli",),
    ("lewm_agent", "lewm_agent.__main__"),  # the face: the public API
]
# The shared modules at the package's top import each other freely (no circle): one group.
SHARED = LAYERS[5]


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [pkg, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = modules()


def imports(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports anywhere in its file."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # `import a.b.c` of a function or class: its module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


GRAPH = {name: imports(name, path) for name, path in MODULES.items()}


def group(name: str) -> tuple[int, str]:
    best = None
    for i, layer in enumerate(LAYERS):
        for g in layer:
            if name == g or name.startswith(g + ".") and g not in ("lewm_agent", "lewm_envs"):
                if best is None or len(g) > len(best[1]):
                    best = (i, g)
    assert best is not None, f"{name}: not in any layer of tests/test_layout.py; declare where it belongs"
    return best


def test_every_module_has_a_layer():
    for name in MODULES:
        group(name)


def test_imports_point_down_the_layers():
    wrong = []
    for name, targets in GRAPH.items():
        layer, g = group(name)
        for t in targets:
            t_layer, t_g = group(t)
            if not (t_layer < layer or t_g == g or (layer == t_layer and LAYERS[layer] is SHARED)):
                wrong.append(f"{name} -> {t} (layer {layer} {g!r} may not import layer {t_layer} {t_g!r})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for t in sorted(GRAPH[n]):
            if state.get(t) == 1:
                circles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(GRAPH):
        if n not in state:
            visit(n)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_setup_cfg_lists_every_package():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    folders = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert folders <= listed, f"setup.cfg [options] packages misses {sorted(folders - listed)}"


def test_the_readme_layout_names_every_folder_and_module():
    """README's Layout is the tree's: a module or folder added, moved or renamed must be named there."""
    import re
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    words = set(re.findall(r"[A-Za-z_]+", block))
    missing = []
    for name, path in MODULES.items():
        parts = name.split(".")[1:]  # under lewm_agent or lewm_envs (envs/)
        if not parts or parts[-1] in ("__main__",):
            continue
        if path.name == "__init__.py":
            if f"{parts[-1]}/" not in block:
                missing.append(f"{path.relative_to(ROOT).parent}/")
        elif parts[-1] not in words:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"README's Layout does not name: {sorted(missing)}"

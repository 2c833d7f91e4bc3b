"""The package's layers: every import points to the module's own layer or one below, and no
module reaches itself through imports (a circle). Read from the source with ast."""

import ast

import pytest
from helpers import REPO

PACKAGE = REPO / "src" / "resnet_recipe"
# Lowest first, as resnet_recipe/__init__.py lists them; modules directly in the package
# (the command line) sit on top.
LAYERS = [
    "files",
    "workflow_support",
    "data",
    "model",
    "scoring",
    "training",
    "benchmarking",
    "deployment",
    "report",
]
TOP = len(LAYERS)


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else TOP


def package_modules():
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path, modules):
    """Package modules that a file imports anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def test_every_folder_of_the_package_is_a_known_layer():
    folders = {
        path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"
    }
    assert folders == set(LAYERS)


def test_imports_only_point_to_the_same_layer_or_below():
    modules = package_modules()
    upward = [
        f"{module} imports {target}"
        for module, path in modules.items()
        for target in imports_of(path, modules)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_module_reaches_itself_through_imports():
    modules = package_modules()
    graph = {module: imports_of(path, modules) - {module} for module, path in modules.items()}
    # A package imports its own modules' names only in its docstring map, never in code.
    circles = []
    for start in graph:
        seen, pending = set(), list(graph[start])
        while pending:
            current = pending.pop()
            if current == start:
                circles.append(start)
                break
            if current not in seen:
                seen.add(current)
                pending.extend(graph[current])
    assert circles == []


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_has_a_docstring_map_of_its_modules(layer):
    init = PACKAGE / layer / "__init__.py"
    text = ast.get_docstring(ast.parse(init.read_text()))
    modules = [
        path for path in sorted((PACKAGE / layer).glob("*.py")) if path.name != "__init__.py"
    ]
    assert modules, f"layer {layer} holds no module"
    for module in modules:
        assert module.name in text, f"{init} does not map {module.name}"

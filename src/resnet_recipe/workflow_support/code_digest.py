"""Which package modules a stage script runs, and one digest of their text.

The import statements of the script and, transitively, of every package module it reaches
are read with `ast` (nothing is imported, so this needs neither MXNet nor DALI). Every form
counts: `import pkg.a`, `from pkg import a`, `from pkg.a import b`, relative imports, and
imports inside functions (a lazy import still runs in the stage). Importing a submodule also
runs its parent packages' `__init__.py`, so those count too. The digest covers the modules'
names and bytes, never modification times: a checkout that leaves the text unchanged gives
the same digest.

Only the statements that start a line with `import` or `from` are parsed (with their
continuation lines), not whole modules: parsing every module of the package would cost
every workflow start a few hundred milliseconds. A docstring line that happens to start
with one of those words either does not parse (and is skipped) or adds a module to the
digest, which errs on the side of rerunning.
"""

import ast
import hashlib
import os
import re

PACKAGE = "resnet_recipe"
IMPORT_LINE = re.compile(rb"^[ \t]*(?:import|from)[ \t.]")


def module_file(package_root, module):
    """The file of a dotted module name under package_root (the folder holding the
    package), or None when no such module or package exists there."""
    base = os.path.join(package_root, *module.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def with_parents(module):
    """module and every package above it: importing a.b.c runs a, a.b and a.b.c."""
    parts = module.split(".")
    return [".".join(parts[: index + 1]) for index in range(len(parts))]


def imported_names(path, module, is_package):
    """Dotted names that the import statements of one file may load, as written (a name
    from `from m import x` is given as both m and m.x: x may be a submodule).

    module is the file's own dotted name (None for a script outside the package), used to
    resolve relative imports; is_package says whether the file is a package __init__.
    """
    with open(path, "rb") as handle:
        text = handle.read()
    names = []
    for line, statement in import_statements(text):
        try:
            tree = ast.parse(statement)
        except SyntaxError:
            continue  # prose in a docstring, not a statement
        for node in tree.body:
            if isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = absolute_from(node, module, is_package, f"{path}:{line}")
                names.append(base)
                names.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def import_statements(text):
    """(line number, source) of each statement of `text` (bytes) that starts a line with
    `import` or `from`, with its continuation lines, comments removed and dedented."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if IMPORT_LINE.match(lines[index]):
            start = index
            statement = [lines[index].split(b"#")[0].strip()]
            # An import holds no strings, so "#" starts a comment and parentheses balance.
            while index + 1 < len(lines) and (
                statement[-1].endswith(b"\\")
                or sum(part.count(b"(") - part.count(b")") for part in statement) > 0
            ):
                index += 1
                statement.append(lines[index].split(b"#")[0].strip())
            yield start + 1, b"\n".join(statement)
        index += 1


def absolute_from(node, module, is_package, where):
    """The absolute module name of a `from ... import` statement at `where`."""
    if node.level == 0:
        return node.module
    if module is None:
        raise ValueError(f"{where}: a relative import outside a package")
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    if node.level - 1 > len(anchor) - 1:
        raise ValueError(f"{where}: relative import beyond the top package")
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def stage_modules(script, package_root, package=PACKAGE, parsed=None):
    """{dotted name: file} of every module of `package` that running `script` imports,
    directly or through other package modules. `parsed` (file -> imported names) may be
    shared between calls, so that each file is read and parsed once."""
    parsed = {} if parsed is None else parsed
    found = {}
    pending = [(script, None, False)]
    while pending:
        path, module, is_package = pending.pop()
        if path not in parsed:
            parsed[path] = imported_names(path, module, is_package)
        for name in parsed[path]:
            if name != package and not name.startswith(package + "."):
                continue
            for parent in with_parents(name):
                if parent in found:
                    continue
                file = module_file(package_root, parent)
                if file is None:
                    continue  # an attribute imported from a module, not a module
                found[parent] = file
                pending.append((file, parent, file.endswith("__init__.py")))
    return found


def code_digests(scripts, package_root, package=PACKAGE):
    """{script: sha256 of the relative paths and contents of the package modules it runs},
    reading and parsing each file once for all scripts."""
    parsed, contents = {}, {}
    digests = {}
    for script in scripts:
        digest = hashlib.sha256()
        for name, file in sorted(stage_modules(script, package_root, package, parsed).items()):
            if file not in contents:
                with open(file, "rb") as handle:
                    contents[file] = handle.read()
            digest.update(f"{name}\0{len(contents[file])}\0".encode())
            digest.update(contents[file])
        digests[script] = digest.hexdigest()
    return digests

"""The import graph of stage scripts and the code digest that reruns stages."""

import ast
import contextlib
import os
import textwrap

import pytest
from helpers import REPO

from resnet_recipe.workflow_support.code_digest import (
    code_digests,
    import_statements,
    stage_modules,
)

SCRIPTS = REPO / "workflow" / "scripts"
SOURCE = REPO / "src"


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def package(tmp_path):
    """A small resnet_recipe package that uses every import form, and a script using it."""
    write(
        tmp_path / "src",
        {
            "resnet_recipe/__init__.py": "VERSION = '1'\n",
            "resnet_recipe/direct.py": """\
                \"\"\"A docstring whose lines start like imports:
                from the top, then
                import what is needed (see resnet_recipe.other).
                \"\"\"
                import os
                import numpy as np
                from . import sibling
                from .nested import (  # a comment with a parenthesis (
                    leaf,
                )
                from resnet_recipe import \\
                    VERSION

                def lazy():
                    import resnet_recipe.late.deep
                    return resnet_recipe.late.deep
                """,
            "resnet_recipe/sibling.py": "from . import VERSION\n",
            "resnet_recipe/nested/__init__.py": "from resnet_recipe.nested.inner import thing\n",
            "resnet_recipe/nested/inner.py": "thing = 1\n",
            "resnet_recipe/nested/leaf.py": "from . import inner\nfrom ..sibling import x\n",
            "resnet_recipe/late/__init__.py": "",
            "resnet_recipe/late/deep.py": "",
            "resnet_recipe/unused.py": "import resnet_recipe.direct\n",
            "resnet_recipe/other.py": "",
        },
    )
    write(
        tmp_path / "scripts",
        {
            "stage.py": "from resnet_recipe.direct import lazy\nlazy()\n",
            "other_stage.py": "import resnet_recipe.other\nimport mxnet\n",
        },
    )
    return tmp_path


def digests(package):
    scripts = [str(package / "scripts" / name) for name in ("stage.py", "other_stage.py")]
    found = code_digests(scripts, str(package / "src"))
    return {os.path.basename(script): digest for script, digest in found.items()}


def test_every_import_form_is_followed(package):
    found = stage_modules(str(package / "scripts/stage.py"), str(package / "src"))
    assert sorted(found) == [
        "resnet_recipe",
        "resnet_recipe.direct",
        "resnet_recipe.late",
        "resnet_recipe.late.deep",
        "resnet_recipe.nested",
        "resnet_recipe.nested.inner",
        "resnet_recipe.nested.leaf",
        "resnet_recipe.sibling",
    ]
    assert found["resnet_recipe.nested"] == str(package / "src/resnet_recipe/nested/__init__.py")
    other = stage_modules(str(package / "scripts/other_stage.py"), str(package / "src"))
    assert sorted(other) == ["resnet_recipe", "resnet_recipe.other"]


def test_the_digest_follows_the_text_of_used_modules_only(package):
    before = digests(package)
    assert before["stage.py"] != before["other_stage.py"]

    unused = package / "src/resnet_recipe/unused.py"
    unused.write_text(unused.read_text() + "# edited\n")
    (package / "src/resnet_recipe/new_module.py").write_text("x = 1\n")
    assert digests(package) == before

    deep = package / "src/resnet_recipe/late/deep.py"
    deep.write_text("# edited\n")
    after = digests(package)
    assert after["stage.py"] != before["stage.py"]
    assert after["other_stage.py"] == before["other_stage.py"]

    deep.write_text("")
    assert digests(package) == before


def test_a_touched_module_keeps_its_digest(package):
    before = digests(package)
    touched = sorted((package / "src").rglob("*.py"))
    assert touched
    for path in touched:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert digests(package) == before


def test_text_swapped_between_two_modules_changes_the_digest(package):
    """Module names are part of the digest, not only the texts."""
    before = digests(package)
    src = package / "src/resnet_recipe"
    sibling, inner = src / "sibling.py", src / "nested/inner.py"
    sibling_text, inner_text = sibling.read_text(), inner.read_text()
    sibling.write_text(inner_text)
    inner.write_text(sibling_text)
    assert digests(package)["stage.py"] != before["stage.py"]


def test_a_relative_import_beyond_the_package_names_the_file(package):
    bad = package / "src/resnet_recipe/other.py"
    bad.write_text("from ... import anything\n")
    with pytest.raises(ValueError, match=r"other\.py:1: relative import beyond"):
        digests(package)


def test_the_line_scan_finds_every_import_a_full_parse_finds():
    """On the real package and scripts: the statements scanned are all the import
    statements of each file, as a parse of the whole file finds them."""
    files = [*SOURCE.rglob("*.py"), *SCRIPTS.glob("*.py")]
    assert len(files) > 40
    for path in files:
        text = path.read_bytes()
        full = {
            ast.dump(node)
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Import | ast.ImportFrom)
        }
        scanned = set()
        for _, statement in import_statements(text):
            with contextlib.suppress(SyntaxError):
                scanned.update(ast.dump(node) for node in ast.parse(statement).body)
        assert full <= scanned, path


def test_the_stage_scripts_use_the_modules_of_their_stage():
    """The real scripts: the report does not run the network, training does not run the
    record packing or the report, and no stage runs the command line interface."""
    modules = {
        script.name: set(stage_modules(str(script), str(SOURCE))) for script in SCRIPTS.glob("*.py")
    }
    assert "resnet_recipe.data.records" in modules["pack_records.py"]
    assert "resnet_recipe.model.network" in modules["train.py"]
    assert "resnet_recipe.model.network" in modules["bench_infer.py"]
    assert "resnet_recipe.model.network" not in modules["report.py"]
    assert "resnet_recipe.data.records" not in modules["train.py"]
    assert not any(name.startswith("resnet_recipe.report") for name in modules["train.py"])
    assert not any("resnet_recipe.cli" in used for used in modules.values())

"""The packages import one way: edge -> firmware_sim -> export -> groundfloor. Every import
counts, lazy ones inside functions included, and so do names run through isolate's
"module:function" targets (a child process that imports upward is still an upward import)."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["edge", "firmware_sim", "export", "groundfloor"]   # top to bottom
TARGET = re.compile(r"^([a-z_][a-z0-9_.]*):[A-Za-z_][A-Za-z0-9_]*$")


def _rank(module: str):
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def imports_of(source: str, package: str = "") -> list[tuple[int, str]]:
    """(line, module) for every import and every isolate target string in the source."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside its own package
                out.append((node.lineno, package))
            elif node.module:
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = TARGET.match(node.value)
            if m:
                out.append((node.lineno, m.group(1)))
    return out


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            rel = path.relative_to(root)
            own = LAYERS.index(layer)
            for line, module in imports_of(path.read_text(), layer):
                rank = _rank(module)
                if rank is not None and rank < own:
                    bad.append(f"{rel}:{line} imports {module} ({LAYERS[rank]} is above {layer})")
    return bad


def test_no_package_imports_upward():
    bad = upward_imports()
    assert not bad, "imports that run upward:\n" + "\n".join(bad)


@pytest.mark.parametrize("source", [
    "from edge.config import load_config\n",
    "def f():\n    import edge.tasks\n",                     # lazy
    "def f():\n    from firmware_sim import bench\n",
    "X = 'edge.reference:export_reference'\n",             # an isolate target
])
def test_an_upward_import_is_found(tmp_path, source):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "export" / "planted.py").write_text(source)
    assert len(upward_imports(tmp_path)) == 1


def test_downward_and_relative_imports_pass(tmp_path):
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "firmware_sim" / "ok.py").write_text(
        "from export import inspect\nfrom groundfloor.errors import BadInput\nfrom .x import y\n"
        "T = 'groundfloor.tflm:run_child'\n")
    assert upward_imports(tmp_path) == []


def test_groundfloor_imports_nothing_of_the_project():
    for path in (ROOT / "groundfloor").rglob("*.py"):
        for line, module in imports_of(path.read_text(), "groundfloor"):
            assert _rank(module) in (None, LAYERS.index("groundfloor")), f"{path.name}:{line} {module}"


def test_every_isolate_target_names_a_function():
    """A child-process target ("module:function") that no longer exists fails only at run time."""
    missing = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                    continue
                m = TARGET.match(node.value)
                if not m or _rank(m.group(1)) is None:
                    continue
                module, func = node.value.split(":")
                target = ROOT / (module.replace(".", "/") + ".py")
                defined = target.is_file() and any(
                    isinstance(d, ast.FunctionDef) and d.name == func
                    for d in ast.parse(target.read_text()).body)
                if not defined:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not missing, "isolate targets that name no function:\n" + "\n".join(missing)

"""The layers import only inward: read from every module's syntax tree, function-level and
relative imports included, so a forbidden import fails here before it ships."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: (modules the rule governs, imports they may not make, why)
FORBIDDEN = [
    ("gateway.providers", ("gateway.store", "gateway.web", "gateway.jobs", "gateway.apply", "gateway.ingest"),
     "providers verify and translate; the use cases persist"),
    ("gateway.store", ("gateway.providers", "gateway.web", "gateway.jobs"),
     "the store knows the domain, not who feeds it"),
    ("cognito_triggers", ("gateway", "flask", "sqlalchemy"),
     "the Lambda archive holds cognito_triggers alone and starts cold within 5 s"),
    ("gateway", ("devtools", "tests", "bench"),
     "development code is not shipped"),
]


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def imports(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module imported) for every import; ``from a import b`` names ``a`` and ``a.b``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(package: str, allowed) -> list[str]:
    found = set()
    for module, path in modules(package):
        for line, name in imports(module, path):
            if not allowed(name):
                found.add(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(found)


def test_the_domain_imports_only_the_standard_library():
    def allowed(name: str) -> bool:
        return within(name, "gateway.domain") or name.split(".")[0] in sys.stdlib_module_names

    found = violations("gateway.domain", allowed)
    assert not found, "gateway.domain may import only the standard library:\n" + "\n".join(found)


@pytest.mark.parametrize("package, forbidden, why", FORBIDDEN, ids=[rule[0] for rule in FORBIDDEN])
def test_no_forbidden_import(package, forbidden, why):
    found = violations(package, lambda name: not any(within(name, prefix) for prefix in forbidden))
    assert not found, f"{package} may not import {', '.join(forbidden)} ({why}):\n" + "\n".join(found)


def test_the_rules_see_relative_and_function_level_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from . import port\ndef f():\n    from ..web import views\n")
    assert sorted(name for _, name in imports("gateway.store.mod", source)) == [
        "gateway.store", "gateway.store.port", "gateway.web", "gateway.web.views"]


def test_the_app_loads_no_development_code():
    code = ("import sys, gateway; app = gateway.create_app(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'devtools', 'tests', 'bench'}), "
            "'demo' in app.cli.commands)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": "sqlite://"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "[] False"


#: A module a maintainer reads in one sitting, a function on one screen.
MODULE_LINES, FUNCTION_LINES = 300, 40


def oversized(package: str) -> list[str]:
    found = []
    for _, path in modules(package):
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    return found


def test_modules_and_functions_stay_small():
    found = oversized("gateway")
    assert not found, (f"no module in gateway/ over {MODULE_LINES} lines, no function over {FUNCTION_LINES}:\n"
                       + "\n".join(found))


def test_the_size_rule_sees_a_long_function(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("def f():\n" + "    x = 1\n" * FUNCTION_LINES)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert oversized("pkg") == [f"pkg/mod.py:1 f: {FUNCTION_LINES + 1} lines"]

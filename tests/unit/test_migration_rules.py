"""The rules for writing a migration that runs while the previous release serves (README,
"Migrations while the previous release serves"), read from each migration's syntax tree,
so that a new one breaking them fails here rather than stopping deliveries in a deploy."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[2] / "gateway/store/migrations/versions"


def calls(tree: ast.Module, name: str) -> list[ast.Call]:
    """Every ``op.<name>(...)`` in ``tree``."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == name and isinstance(node.func.value, ast.Name) and node.func.value.id == "op"]


def text(node: ast.AST, constants: dict[str, str]) -> str | None:
    """A string literal's value, or a module constant's."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return constants.get(node.id) if isinstance(node, ast.Name) else None


def argument(call: ast.Call, position: int, keyword: str) -> ast.AST | None:
    found = [k.value for k in call.keywords if k.arg == keyword]
    return found[0] if found else call.args[position] if len(call.args) > position else None


def parsed(path: Path) -> tuple[ast.Module, dict[str, str]]:
    tree = ast.parse(path.read_text(), str(path))
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}
    return tree, constants


MIGRATIONS = sorted(VERSIONS.glob("[0-9]*.py"))


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda path: path.stem)
def test_an_index_on_a_table_that_holds_rows_is_built_online(path):
    """``op.create_index`` blocks the table's writers for the whole build on PostgreSQL:
    only for a table the same migration creates; otherwise ``online.create_index``."""
    tree, constants = parsed(path)
    created = {text(argument(call, 0, "table_name"), constants) for call in calls(tree, "create_table")}
    blocking = [call.lineno for call in calls(tree, "create_index")
                if text(argument(call, 1, "table_name"), constants) not in created]
    assert not blocking, f"{path.name}, line(s) {blocking}: use gateway.store.online.create_index"


@pytest.mark.parametrize("path", MIGRATIONS, ids=lambda path: path.stem)
def test_a_column_added_to_a_table_that_holds_rows_is_nullable(path):
    """A NOT NULL column added to a table with rows needs a default for them (a rewrite when
    the default is volatile) and fails the previous release's inserts, which do not name it."""
    tree, constants = parsed(path)
    required = [call.lineno for call in calls(tree, "add_column") for column in call.args[1:2]
                if isinstance(column, ast.Call) and any(k.arg == "nullable" and isinstance(k.value, ast.Constant)
                                                        and k.value.value is False for k in column.keywords)]
    assert not required, f"{path.name}, line(s) {required}: add it nullable (README: expand, then contract)"

"""The layout's one-way flow, read from the source with ``ast``: cli -> job -> {source, analysis,
store}; analysis -> {video, models}; fleet apart; ``models`` a library that never imports ``analyzer``."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {"cli", "faces"}  # the command line: may use every part
BASE = {"errors", "ids", "conninfo", "files", "events", "settings", "logs"}  # shared by every layer
# Layer -> the layers it may import (besides itself and BASE). Anything not listed is an arrow run backwards.
ALLOWED: dict[str, set[str]] = {
    "commands": {"job", "store", "fleet", "evaluation", "models"},
    "job": {"source", "analysis", "store", "models"},
    "source": set(),
    "analysis": {"video", "models"},
    "video": set(),
    "store": set(),
    "fleet": {"source", "store"},
    "evaluation": {"analysis", "models", "commands"},
    "base": {"models"},
    "models": set(),
}


# Single module-to-module edges allowed across the arrows, each with its reason.
EXCEPTIONS = {
    # settings validates S3 URIs with the one parser, source.s3's pure functions (no client, no boto3)
    ("analyzer.settings", "analyzer.source.s3"),
}


def layer(module: str) -> str | None:
    """The layer of a dotted module name of this project, None for anything else."""
    parts = module.split(".")
    if parts[0] == "models":
        return "models"
    if parts[0] != "analyzer" or len(parts) == 1:
        return None if parts[0] != "analyzer" else "base"
    if parts[1] in COMMANDS:
        return "commands"
    return "base" if parts[1] in BASE else parts[1]


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (deferred imports inside functions count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # may name a module
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def edges() -> list[tuple[str, str, str, str]]:
    """``(module, imported, its layer, the imported's layer)`` for every import between layers."""
    found = []
    for path in sorted([*REPO.glob("analyzer/**/*.py"), *REPO.glob("models/**/*.py")]):
        source = module_name(path)
        for target in imports(path):
            source_layer, target_layer = layer(source), layer(target)
            if target_layer is not None and target_layer != source_layer:
                found.append((source, target, source_layer, target_layer))
    return found


def test_models_never_imports_analyzer() -> None:
    offending = [(s, t) for s, t, sl, tl in edges() if sl == "models" and t.split(".")[0] == "analyzer"]
    assert not offending


def test_no_import_runs_against_the_arrows() -> None:
    against = [
        f"{s} -> {t}"
        for s, t, sl, tl in edges()
        if tl != "base" and tl not in ALLOWED[sl] and not any(s == a and t.startswith(b + ".") for a, b in EXCEPTIONS)
    ]
    assert not against, against


def test_every_layer_is_a_package_in_the_table() -> None:
    packages = {p.parent.name for p in REPO.glob("analyzer/*/__init__.py")}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)
    modules = {p.stem for p in REPO.glob("analyzer/*.py")} - {"__init__"}
    assert modules == BASE | COMMANDS, modules ^ (BASE | COMMANDS)

"""The project's files a Lambda entry module needs: its imports, walked with ``ast``, transitively.

    python3 deploy/lambda_modules.py [ENTRY]     (default analyzer.fleet.dispatch)

prints one path per line, relative to the repository: every module of ``analyzer`` or ``models``
the entry imports at any depth (deferred imports inside functions included: a superset is safe),
each one's parent packages' ``__init__.py``, and the data files a listed module reads
(``DATA_FILES``). Anything else (stdlib, boto3) is not listed: the Lambda Python runtime provides
boto3.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("analyzer", "models")
ENTRY = "analyzer.fleet.dispatch"
# Files a module reads at run time (importlib.resources), shipped with it: the store's named
# queries (the stale sweep runs them in the Lambda).
DATA_FILES = {"analyzer/store/db.py": ("analyzer/store/sql/queries.sql",)}


def module_file(name: str, root: Path = REPO) -> Path | None:
    """The file of project module ``name`` (a module or a package), None if there is none."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Dotted names ``path`` imports; ``from a import b`` gives ``a`` and ``a.b`` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise ValueError(f"{path}: relative import of {node.module}; the walk expects absolute ones")
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_files(entry: str = ENTRY, root: Path = REPO) -> list[Path]:
    """Every project file ``entry`` needs, relative to ``root``, sorted.

    Args:
        entry: the dotted name of the entry module.
        root: the repository.

    Returns:
        Paths relative to ``root``: modules and the ``__init__.py`` of every package above them.
    """
    seen: dict[str, Path] = {}
    pending = [entry]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        if parts[0] not in PROJECT or name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            continue  # ``from a import b`` where b is a name, not a module
        seen[name] = path
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        pending.extend(imported_names(path))
    files = [path.relative_to(root) for path in seen.values()]
    files += [Path(data) for file in list(files) for data in DATA_FILES.get(file.as_posix(), ())]
    return sorted(files)


if __name__ == "__main__":
    for file in project_files(sys.argv[1] if len(sys.argv) > 1 else ENTRY):
        print(file)

"""The package layout the README's "Layout" section draws: each folder imports only what it may, and no cycle.

Read from the source (every import statement, at module level or inside a function), so a new import that
crosses a boundary fails here with the file and the module it names.
"""

from __future__ import annotations

import ast

from tests.support.paths import ROOT_DIR

PACKAGE = ROOT_DIR / "archiver"
BASE = {"model", "errors", "config", "urls", "redaction", "faults", "scratch", "terminal", "cputime"}
# what each part may import besides itself and the base (the README's Layout table says why)
MAY_IMPORT: dict[str, set[str]] = {
    "find": set(),
    "fetch": set(),
    "image": set(),
    "storage": set(),
    "manifest": set(),
    "articles": {"find"},
    "run": {"find", "fetch", "image", "storage", "manifest", "articles", "dedupe"},
    "dedupe": {"find", "image", "storage", "manifest", "articles"},
    "gc": {"find", "storage", "manifest", "articles", "run"},
    "commands": {"find", "fetch", "image", "storage", "manifest", "articles", "run", "dedupe", "gc"},
    "cli": {"commands"},
    "console": {"cli"},
    "__main__": {"console"},
}
BASE_MAY_IMPORT = {"model": set(), "errors": {"model", "terminal"}, "config": {"errors", "model"}, "redaction": set(),
                   "urls": {"errors", "redaction"}, "faults": set(), "cputime": set(), "scratch": set(),
                   "terminal": {"redaction"}}


def _part(module: str) -> str:
    """"archiver.fetch.client" -> "fetch"; "archiver.cli" -> "cli"."""
    return module.split(".")[1] if module.count(".") else ""


def _imports() -> dict[str, set[str]]:
    """Module -> the archiver modules it imports (``from archiver import x`` counts as archiver.x)."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT_DIR).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("archiver"):
                if node.module == "archiver":
                    found.update(f"archiver.{a.name}" for a in node.names if a.name != "__version__")
                else:
                    found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("archiver."))
        out[module] = found - {module}
    return out


def test_each_part_imports_only_what_the_layout_allows() -> None:
    wrong = []
    for module, targets in sorted(_imports().items()):
        part = _part(module)
        allowed = BASE_MAY_IMPORT[part] if part in BASE else MAY_IMPORT.get(part, set()) | BASE | {part}
        for target in sorted(targets):
            if target != "archiver" and _part(target) not in allowed | {part}:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycle_at_module_level() -> None:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT_DIR).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = set()
        for node in tree.body:  # module level only: an import inside a function runs later, by design
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("archiver."):
                graph[module].add(node.module)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_readme_layout_names_every_folder() -> None:
    readme = (ROOT_DIR / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert [f for f in folders if f"{f}/" not in section] == []
    assert [m for m in sorted(BASE) if f"{m}.py" not in section] == []


def test_the_checkout_holds_only_the_project_at_its_top_level() -> None:
    """What git tracks at the top level is the design card's layout and the CI script: stray output a command left
    there (it happened: logs and tracebacks committed beside the README) fails here."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT_DIR, capture_output=True, text=True, check=True).stdout
    top = {line.split("/", 1)[0] for line in tracked.splitlines()}
    assert top <= {".ci", ".gitignore", "README.md", "archiver", "bench", "config.example.toml", "examples",
                   "pyproject.toml", "tests"}, sorted(top)

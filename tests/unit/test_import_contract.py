"""The import contract of ``src/dockyard`` (docs/architecture.md, "Which code may import which").

Every module is read with ``ast`` (nothing is imported, so this stays pure and fast), placed in
one *part*, and each of its imports of ``dockyard.*`` is checked against ``MAY_IMPORT``. Every
import counts: at module level, inside functions, under ``if TYPE_CHECKING:`` and in
``try``/``except`` — a lazy or typing-only import still means the lower module knows the upper
one, which is what the picture is about.

To place a new package, add it to ``PARTS``. To let one feature use another, add the pair to
``FEATURE_USES`` with its reason. To keep an import that breaks the table on purpose, add an
``Allowance`` to ``EXCEPTIONS`` with its reason, and the same line to docs/architecture.md.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
THIS_FILE = "tests/unit/test_import_contract.py"

# --- the table ------------------------------------------------------------------------------

# Each part lists module prefixes (a package, or one module); the longest prefix wins, so a
# module can be placed apart from its package.
PARTS: dict[str, tuple[str, ...]] = {
    # Wiring: builds the app and the command line from everything. db/models.py collects every
    # domain's models so Alembic (db/migrations/env.py) and the drift test see one metadata.
    "edge": (
        "dockyard.__main__",
        "dockyard.app",
        "dockyard.backup",  # the backup/restore commands' work, run only by cli.py
        "dockyard.cli",
        "dockyard.db.models",
        "dockyard.db.migrations",
    ),
    "console": ("dockyard.console",),
    # "handlers" holds no prefixes: it is every HANDLER_MODULES module of a feature or spine
    # package (see part_of).
    "handlers": (),
    # The kit every Harbor API handler is written with: @operation, the caller and its audit
    # trail, the services in the app's state. It knows the spine; only handlers import it.
    "kit": ("dockyard.http.api", "dockyard.http.state", "dockyard.http.openapi"),
    # Optional domains that plug into the spine (hooks, jobs, their own API) and could be left
    # out or split off without touching it.
    "features": (
        "dockyard.artifacts",
        "dockyard.gc",
        "dockyard.immutability",
        "dockyard.labels",
        "dockyard.metrics",  # Prometheus metrics: reads the spine's tables at scrape time
        "dockyard.remotes",  # registry endpoints and remote adapters (replication, proxy)
        "dockyard.retention",
        "dockyard.search",
        "dockyard.webhooks",
        # placed ahead of their arrival (DESIGN.md, "Where the enterprise features sit")
        "dockyard.proxy",
        "dockyard.replication",
        "dockyard.scan",
        "dockyard.scanner",
        "dockyard.signatures",
    ),
    # What every login, project and push needs. Spine packages import each other freely:
    # logins read projects and robots, projects carry members, quotas and robots, the registry
    # asks projects and records to audit.
    "spine": (
        "dockyard.audit",
        "dockyard.iam",
        "dockyard.jobs",
        "dockyard.projects",
        "dockyard.quota",
        "dockyard.registry",
        "dockyard.robots",
        "dockyard.system",
    ),
    # HTTP plumbing that knows no domain: header parsing, error bodies, middleware, the
    # outbound client and its egress policy.
    "http": ("dockyard.http",),
    # tracing.py instruments the engines and the storage driver (and holds the request
    # middleware, plain ASGI), so it sits beside them.
    "data": ("dockyard.db", "dockyard.storage", "dockyard.tracing"),
    "pure": (
        "dockyard",  # the package's own __init__ only (see part_of): empty, or a version string
        "dockyard.background",
        "dockyard.errors",
        "dockyard.logs",
        "dockyard.lru",  # a bounded LRU cache (placed ahead of its arrival)
        "dockyard.oci",
        # the scanner's package inventory: parses layer blobs it is handed, knows no service
        "dockyard.scanner.inventory",
        "dockyard.settings",
    ),
}

# A feature's or spine package's handler modules: they answer HTTP and call services.
HANDLER_MODULES = ("api", "routes")  # and any module named *_api
HANDLER_PARTS = ("features", "spine")

BELOW_EDGE = ("console", "handlers", "kit", "features", "spine", "http", "data", "pure")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "edge": frozenset({"edge", *BELOW_EDGE}),
    "console": frozenset({"console", "kit", "features", "spine", "http", "data", "pure"}),
    "handlers": frozenset({"handlers", "kit", "features", "spine", "http", "data", "pure"}),
    "kit": frozenset({"kit", "spine", "http", "data", "pure"}),
    "features": frozenset({"features", "spine", "http", "data", "pure"}),
    "spine": frozenset({"spine", "http", "data", "pure"}),
    "http": frozenset({"http", "pure"}),
    "data": frozenset({"data", "pure"}),
    "pure": frozenset({"pure"}),
}

# Features are independent of each other except for these uses (user, used): reason.
FEATURE_USES: dict[tuple[str, str], str] = {
    ("artifacts", "labels"): "an artifact listing shows and filters by its labels",
    ("artifacts", "immutability"): "an artifact listing shows whether each tag is immutable",
    ("artifacts", "scan"): "an artifact listing shows its stored scan and SBOM summaries",
    ("labels", "artifacts"): "a label is attached to an artifact the caller names",
    ("scan", "artifacts"): "a scan request names an artifact the caller may see",
    ("retention", "immutability"): "retention never removes a tag an immutability rule holds",
    ("retention", "webhooks"): "a retention run reports its deletions as a webhook event",
    ("replication", "webhooks"): "an execution's end is the REPLICATION webhook event",
    ("scan", "webhooks"): "a scan's end is a SCANNING_* webhook event",
    ("scan", "labels"): "a CVE export selects artifacts by their labels",
    ("scan", "immutability"): "a CVE export filters repositories and tags with the rules' patterns",
    ("search", "artifacts"): "search lists artifacts through the artifact listing",
    ("replication", "remotes"): "a replication policy copies through a registry endpoint's adapter",
    ("replication", "labels"): "a replication label filter reads the labels on an artifact",
    ("proxy", "remotes"): "a proxy cache project pulls through a registry endpoint's adapter",
    ("proxy", "retention"): "a new proxy cache project gets Harbor's default retention policy",
}


@dataclass(frozen=True)
class Allowance:
    """Imports that break the table on purpose: ``importer`` (a module or package prefix) may
    import each of ``imported`` (prefixes), for ``reason``."""

    importer: str
    imported: tuple[str, ...]
    reason: str


EXCEPTIONS: tuple[Allowance, ...] = (
    Allowance(
        "dockyard.projects.repository",
        (
            "dockyard.immutability.models",
            "dockyard.labels.models",
            "dockyard.retention.models",
            "dockyard.webhooks.models",
        ),
        "deleting a project deletes its rows in the features' tables in the same transaction "
        "(Harbor does). A project-removal hook like registry/hooks.py would invert it, but "
        "delete_project is a plain function the API, the console and the CLI call, so the "
        "hooks would have to reach all three",
    ),
)

# --- the checker ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: str
    line: int


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    path: str
    line: int
    message: str


def module_sources(src: Path = SRC) -> dict[str, tuple[str, str]]:
    """Module name -> (path shown in messages, source) for every module under src/dockyard."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted((src / "dockyard").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        shown = str(path.relative_to(src.parent))
        found[".".join(parts)] = (shown, path.read_text(encoding="utf-8"))
    return found


def _is_package(path: str) -> bool:
    return path.endswith("__init__.py")


def _statements(nodes: Iterable[ast.AST]) -> Iterable[ast.AST]:
    """Every statement, nested ones too (in functions, classes, if/try/with/for/match blocks).

    Import statements sit only there, so expressions are not walked (that is most of the
    tree). ``importlib.import_module("dockyard.x")`` is not an import statement and is not
    seen: name modules in ``import`` statements."""
    for node in nodes:
        yield node
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                yield from _statements(children)


def imports_of(
    module: str, path: str, source: str, known: Iterable[str] = ()
) -> tuple[Import, ...]:
    """Every import of ``dockyard.*`` in ``source``, wherever it sits in the file.

    ``from a import b`` names ``a.b`` when that is a known module, else ``a``."""
    return _imports_of(module, path, source, frozenset(known))


@functools.cache  # the three tests over the real tree parse each file once
def _imports_of(
    module: str, path: str, source: str, known_modules: frozenset[str]
) -> tuple[Import, ...]:
    package = module.split(".") if _is_package(path) else module.split(".")[:-1]
    found: list[Import] = []
    if "dockyard" not in source and "from ." not in source:
        return ()
    for node in _statements(ast.parse(source, filename=path).body):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                targets.append(candidate if candidate in known_modules else origin)
        for target in targets:
            if target == "dockyard" or target.startswith("dockyard."):
                found.append(Import(module, target, path, node.lineno))
    return tuple(found)


def _prefix_match(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def part_of(module: str) -> str | None:
    """The part a module sits in, or None when no part holds its package."""
    best: tuple[int, str] | None = None
    for part, prefixes in PARTS.items():
        for prefix in prefixes:
            exact_only = prefix == "dockyard"  # the package itself, not everything under it
            hit = module == prefix if exact_only else _prefix_match(module, prefix)
            if hit and (best is None or len(prefix) > best[0]):
                best = (len(prefix), part)
    if best is None:
        return None
    part = best[1]
    leaf = module.rsplit(".", 1)[-1]
    is_handler = leaf in HANDLER_MODULES or leaf.endswith("_api")
    if part in HANDLER_PARTS and is_handler and module.count(".") >= 2:
        return "handlers"
    return part


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _domain(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _excepted(item: Import, exceptions: Iterable[Allowance]) -> Allowance | None:
    for allowance in exceptions:
        if _prefix_match(item.importer, allowance.importer) and any(
            _prefix_match(item.imported, prefix) for prefix in allowance.imported
        ):
            return allowance
    return None


def _fix_hint(part: str, target_part: str) -> str:
    if target_part == "handlers" or target_part == "kit":
        return (
            "only handler modules (api.py, routes.py, *_api.py), the console and the edge may "
            "use the API kit and other handlers: move the code into a service, or the call "
            "into a handler"
        )
    return (
        f"move what you need into a {part} (or lower) package, or turn the call around "
        "with a hook (as registry/hooks.py does)"
    )


def check(
    sources: Mapping[str, tuple[str, str]],
    exceptions: Iterable[Allowance] = EXCEPTIONS,
    feature_uses: Mapping[tuple[str, str], str] = FEATURE_USES,
) -> list[Violation]:
    """Every import in ``sources`` (module -> (path, source)) that the contract refuses."""
    exceptions = tuple(exceptions)
    known = set(sources)
    violations: list[Violation] = []
    unplaced: set[str] = set()
    for module, (path, source) in sorted(sources.items()):
        part = part_of(module)
        if part is None:
            if _package(module) not in unplaced:
                unplaced.add(_package(module))
                violations.append(
                    Violation(
                        module,
                        "",
                        path,
                        1,
                        f"{path}: {_package(module)} is in no part of the import contract. "
                        f"Add it to PARTS in {THIS_FILE} (a new domain is usually a feature, "
                        "a helper that imports nothing of ours is pure) and to the table in "
                        "docs/architecture.md.",
                    )
                )
            continue
        for item in imports_of(module, path, source, known):
            target_part = part_of(item.imported)
            if target_part is None:  # reported once, as its own module
                continue
            where = f"{item.path}:{item.line}: {module} ({part}) imports {item.imported}"
            if target_part == part:
                if (
                    part == "features"
                    and _domain(module) != _domain(item.imported)
                    and (_domain(module), _domain(item.imported)) not in feature_uses
                ):
                    if _excepted(item, exceptions):
                        continue
                    pair = f'("{_domain(module)}", "{_domain(item.imported)}")'
                    violations.append(
                        Violation(
                            module,
                            item.imported,
                            item.path,
                            item.line,
                            f"{where} (features): features are independent unless a use is "
                            f"declared. Move the shared code into the spine, or add {pair}: "
                            f"'<reason>' to FEATURE_USES in {THIS_FILE}.",
                        )
                    )
                continue
            if target_part in MAY_IMPORT[part] or _excepted(item, exceptions):
                continue
            allowed = ", ".join(p for p in BELOW_EDGE if p in MAY_IMPORT[part] and p != part)
            violations.append(
                Violation(
                    module,
                    item.imported,
                    item.path,
                    item.line,
                    f"{where} ({target_part}), but {part} may import only {part}, "
                    f"{allowed or 'nothing else'}. Fix: {_fix_hint(part, target_part)}; or, "
                    f"if it is deliberate, add Allowance({module!r}, ({item.imported!r},), "
                    f"'<reason>') to EXCEPTIONS in {THIS_FILE} and to docs/architecture.md.",
                )
            )
    return violations


def unused_allowances(
    sources: Mapping[str, tuple[str, str]],
    exceptions: Iterable[Allowance] = EXCEPTIONS,
    feature_uses: Mapping[tuple[str, str], str] = FEATURE_USES,
) -> list[str]:
    """``importer -> imported`` of each exception that excuses nothing (dropping it changes
    no verdict), so the list stays true."""
    singles = [Allowance(a.importer, (p,), a.reason) for a in exceptions for p in a.imported]
    verdict = check(sources, singles, feature_uses)
    stale: list[str] = []
    for index, single in enumerate(singles):
        others = singles[:index] + singles[index + 1 :]
        if check(sources, others, feature_uses) == verdict:
            stale.append(f"{single.importer} -> {single.imported[0]}")
    return stale


# --- the contract on the real tree -------------------------------------------------------------


@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[str, str]]:
    return module_sources()


def test_every_import_keeps_the_contract(sources: dict[str, tuple[str, str]]) -> None:
    assert len(sources) > 100, f"no modules found under {SRC}"
    violations = check(sources)
    assert not violations, "\n".join(v.message for v in violations)


def test_every_exception_is_still_needed(sources: dict[str, tuple[str, str]]) -> None:
    stale = unused_allowances(sources)
    assert not stale, (
        f"these EXCEPTIONS in {THIS_FILE} excuse no import any more; remove them (and their "
        f"line in docs/architecture.md): {stale}"
    )


def test_every_declared_feature_use_is_still_needed(sources: dict[str, tuple[str, str]]) -> None:
    known = set(sources)
    used = {
        (_domain(item.importer), _domain(item.imported))
        for module, (path, source) in sources.items()
        if part_of(module) == "features"
        for item in imports_of(module, path, source, known)
        if part_of(item.imported) == "features"
    }
    stale = sorted(set(FEATURE_USES) - used)
    assert not stale, f"FEATURE_USES in {THIS_FILE} lists uses no import makes: {stale}"


def test_every_part_and_feature_use_names_real_parts() -> None:
    assert set(MAY_IMPORT) == set(PARTS)
    assert set(BELOW_EDGE) | {"edge"} == set(PARTS)
    feature_domains = {p.split(".")[1] for p in PARTS["features"]}
    for user, used in FEATURE_USES:
        assert {user, used} <= feature_domains, (user, used)


# --- the checker can fail -------------------------------------------------------------------


def fake(**modules: str) -> dict[str, tuple[str, str]]:
    """Fake sources: keyword ``iam__service`` is module dockyard.iam.service."""
    out: dict[str, tuple[str, str]] = {}
    for key, source in modules.items():
        name = "dockyard." + key.replace("__", ".")
        out[name] = (f"src/{name.replace('.', '/')}.py", source)
    return out


def test_an_upward_import_is_refused_with_its_rule_and_fix() -> None:
    violations = check(fake(iam__service="from dockyard.gc import service\n", gc__service=""))
    assert len(violations) == 1
    message = violations[0].message
    assert message.startswith("src/dockyard/iam/service.py:1: dockyard.iam.service (spine)")
    assert "imports dockyard.gc.service (features)" in message
    assert "spine may import only spine, http, data, pure" in message
    assert "EXCEPTIONS" in message and "hook" in message


def test_imports_inside_functions_and_type_checking_blocks_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from dockyard.console import web\n"
        "def later() -> None:\n"
        "    import dockyard.app\n"
        "try:\n"
        "    from ..projects import service\n"
        "except ImportError:\n"
        "    pass\n"
    )
    violations = check(fake(db__engine=source, console__web="", app="", projects__service=""))
    assert [(v.imported, v.line) for v in violations] == [
        ("dockyard.console.web", 3),
        ("dockyard.app", 5),
        ("dockyard.projects.service", 7),
    ]


def test_a_package_in_no_part_must_be_placed() -> None:
    violations = check(fake(newthing__service="import json\n", newthing__api=""))
    assert len(violations) == 1
    assert "dockyard.newthing is in no part" in violations[0].message


def test_services_may_not_use_the_api_kit_but_handlers_may() -> None:
    kit = "from dockyard.http.api import operation\n"
    sources = fake(
        projects__service=kit,
        projects__api=kit + "from dockyard.projects import service\n",
        http__api="",
    )
    violations = check(sources)
    assert [v.importer for v in violations] == ["dockyard.projects.service"]
    assert "only handler modules" in violations[0].message


def test_features_use_each_other_only_as_declared() -> None:
    sources = fake(gc__service="from dockyard.webhooks import service\n", webhooks__service="")
    violations = check(sources, feature_uses={})
    assert len(violations) == 1
    assert '("gc", "webhooks")' in violations[0].message
    assert check(sources, feature_uses={("gc", "webhooks"): "a reason"}) == []


def test_an_exception_excuses_only_what_it_names() -> None:
    sources = fake(
        registry__service="from dockyard.labels import models\n",
        registry__repository="from dockyard.labels import service\n",
        labels__models="",
        labels__service="",
    )
    allowance = Allowance("dockyard.registry.service", ("dockyard.labels.models",), "why")
    violations = check(sources, exceptions=[allowance])
    assert [v.importer for v in violations] == ["dockyard.registry.repository"]
    unused = Allowance("dockyard.registry.service", ("dockyard.gc",), "why")
    assert unused_allowances(sources, [allowance, unused]) == [
        "dockyard.registry.service -> dockyard.gc"
    ]


def test_the_edge_may_import_everything_and_pure_code_nothing() -> None:
    sources = fake(
        app="import dockyard.console.web\nfrom dockyard.gc import api\n",
        console__web="",
        gc__api="",
        oci__names="from dockyard.storage import base\n",
        storage__base="",
    )
    assert [v.importer for v in check(sources)] == ["dockyard.oci.names"]

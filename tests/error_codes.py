"""The error codes the API can answer, found in the source, and the ones README.md documents.

Found, not listed by hand: every construction of a DomainError subclass with a literal code
(raise sites and error factories alike), every `error_body` with a literal code, the HTTP
layer's table (`app.errors.HTTP_CODES`) and the refusal reasons of the shipped rulesets. A code
that is not a literal must come from a site this module knows how to derive (`DERIVED`).
"""

import ast
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from fastapi.responses import JSONResponse

from app import errors
from core.errors import DomainError
from policies import ruleset

ROOT = Path(__file__).parents[1]
PACKAGES = ("app", "reports", "compliance", "policies", "audit", "core")

# What only the command line reaches (`policy activate`, `policy replay`, `clients register`):
# their refusals are printed by the CLI, never answered by the API. `only_from_the_cli` checks
# that nothing else calls them.
CLI_MODULES = frozenset({"app.cli", "app.demo", "app.payments_cli"})
NOT_FROM_THE_API = frozenset(
    {
        ("policies.registry", "activate"),
        ("policies.registry", "active"),
        ("policies.decisions", "decide"),
        ("policies.decisions", "replay"),
        ("core.clients", "register"),
        ("core.clients", "rotate_secret"),
    }
)
# The officers' console answers pages, not the API's error bodies: its refusals are worded on
# the page (and its ruleset's reasons are not the API's).
CONSOLE = "app.console"


@dataclass(frozen=True)
class Site:
    """Where an error code is written: `code` is None when it is not a literal."""

    module: str
    function: str  # the qualified name of the enclosing function, "" at module level
    status: int | None  # None: an `error_body` whose status is not a literal beside it
    code: str | None
    line: int


def _modules() -> Iterator[tuple[str, ModuleType, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, importlib.import_module(name), ast.parse(path.read_text(), str(path))


def _resolve(module: ModuleType, node: ast.expr) -> object:
    """What a name or dotted name means at a module's top level (None: a local, a call...)."""
    if isinstance(node, ast.Name):
        return getattr(module, node.id, None)
    if isinstance(node, ast.Attribute):
        base = _resolve(module, node.value)
        return None if base is None else getattr(base, node.attr, None)
    return None


def _code_argument(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return next((kw.value for kw in call.keywords if kw.arg == "code"), None)


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _is_super_init(call: ast.Call) -> bool:
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "__init__"
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "super"
    )


def _takes_a_code(cls: type[DomainError]) -> bool:
    """False for an error that fixes its own code in its __init__ (NoProviderAvailable...)."""
    return "code" in inspect.signature(cls).parameters


class _Scanner(ast.NodeVisitor):
    def __init__(self, name: str, module: ModuleType, tree: ast.Module) -> None:
        self.name, self.module = name, module
        self.parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        self.scope: list[ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.sites: list[Site] = []
        self.references: list[tuple[object, str, str]] = []  # (what, module, function)

    @property
    def function(self) -> str:
        functions = (ast.FunctionDef, ast.AsyncFunctionDef)
        if not any(isinstance(node, functions) for node in self.scope):
            return ""
        return ".".join(node.name for node in self.scope)

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped  # noqa: N815

    def _site(self, node: ast.AST, status: int | None, code: str | None) -> None:
        self.sites.append(Site(self.name, self.function, status, code, getattr(node, "lineno", 0)))

    def visit_Name(self, node: ast.Name) -> None:
        self.references.append((_resolve(self.module, node), self.name, self.function))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.references.append((_resolve(self.module, node), self.name, self.function))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        target = _resolve(self.module, node.func)
        if isinstance(target, type) and issubclass(target, DomainError):
            if _takes_a_code(target):
                self._site(node, errors.status_of(target), _literal(_code_argument(node)))
        elif target is errors.error_body:
            self._site(node, self._status_beside(node), _literal(_code_argument(node)))
        elif _is_super_init(node):
            self._super_init(node)
        self.generic_visit(node)

    def _status_beside(self, call: ast.Call) -> int | None:
        """N in `JSONResponse(error_body(...), status_code=N)`."""
        parent = self.parents.get(call)
        if not (isinstance(parent, ast.Call) and parent.args and parent.args[0] is call):
            return None
        if _resolve(self.module, parent.func) is not JSONResponse:
            return None
        status = next((kw.value for kw in parent.keywords if kw.arg == "status_code"), None)
        if isinstance(status, ast.Constant) and isinstance(status.value, int):
            return status.value
        return None

    def _super_init(self, call: ast.Call) -> None:
        classes = [n for n in self.scope if isinstance(n, ast.ClassDef)]
        cls = getattr(self.module, classes[-1].name, None) if classes else None
        if not (isinstance(cls, type) and issubclass(cls, DomainError)):
            return
        argument = _code_argument(call)
        init = self.scope[-1]
        if (  # `code` handed on as it came: the callers' literals are the sites
            isinstance(argument, ast.Name)
            and isinstance(init, ast.FunctionDef)
            and argument.id in {a.arg for a in init.args.args + init.args.kwonlyargs}
        ):
            return
        self._site(call, errors.status_of(cls), _literal(argument))


@dataclass(frozen=True)
class Scan:
    sites: list[Site]
    references: list[tuple[object, str, str]]


def scan() -> Scan:
    sites: list[Site] = []
    references: list[tuple[object, str, str]] = []
    for name, module, tree in _modules():
        scanner = _Scanner(name, module, tree)
        scanner.visit(tree)
        sites += scanner.sites
        references += scanner.references
    return Scan(sites, references)


def _denial_reasons(_: list[Site]) -> set[tuple[int, str]]:
    """A policy refusal answers with the reason of the deny rule that matched, or no_rule."""
    loaded = [
        ruleset.load(ruleset.RULESETS / v)
        for v in ruleset.available()
        if not v.startswith(ruleset.CONSOLE_PREFIX)
    ]
    reasons = {r.reason_code for s in loaded for r in s.rules if r.effect == "deny"}
    return {(403, reason) for reason in reasons | {ruleset.NO_RULE}}


def _eur_conversion(static: list[Site]) -> set[tuple[int, str]]:
    """The gate re-raises the facts' failure to convert to EUR (fx.rate_in_force) as a 503."""
    found = {s.code for s in static if (s.module, s.function) == ("core.fx", "rate_in_force")}
    return {(503, code) for code in found if code}


def _http_layer(_: list[Site]) -> set[tuple[int, str]]:
    return set(errors.HTTP_CODES.items())


def _handed_on(_: list[Site]) -> set[tuple[int, str]]:
    """A DomainError's own code and status, answered: its construction is the site."""
    return set()


# Every site whose code is not a literal, and what it can answer.
DERIVED: dict[tuple[str, str], Callable[[list[Site]], set[tuple[int, str]]]] = {
    ("compliance.gate", "denial"): _denial_reasons,
    ("compliance.gate", "Gate.__call__"): _eur_conversion,
    ("app.errors", "_http"): _http_layer,
    ("app.errors", "domain_error_response"): _handed_on,
    ("app.api.idempotent", "run"): _handed_on,
    ("app.contract", "_examples"): _handed_on,  # the OpenAPI document's examples, not answers
}


def answered(found: Scan) -> set[tuple[int, str]]:
    """(status, code) of everything the API can answer."""
    static = [
        s
        for s in found.sites
        if (s.module, s.function) not in NOT_FROM_THE_API and not s.module.startswith(CONSOLE)
    ]
    codes = {(s.status, s.code) for s in static if s.code is not None and s.status is not None}
    dynamic = {(s.module, s.function) for s in static if s.code is None}
    for where in dynamic & DERIVED.keys():
        codes |= DERIVED[where](static)
    return {(status, code) for status, code in codes if status is not None and code is not None}


def documented(readme: Path = ROOT / "README.md") -> set[tuple[int, str]]:
    """(status, code) of each row of README's error table: the codes are the `backticked`
    lower_snake_case words of the row."""
    section = readme.read_text().split("\n### Errors\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| (.*) \|$", section, re.MULTILINE)
    return {
        (int(status), code)
        for status, cell in rows
        for code in re.findall(r"`([a-z][a-z0-9_]*)`", cell)
    }

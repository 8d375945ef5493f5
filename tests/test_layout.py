"""The layout keeps the architecture: a pure core, dependencies one way, small modules, and
provider knowledge only in ``sidecar/providers/``.

    sidecar/core       pure: routing, configuration, facts, accounting
    sidecar/apis       pure: the app-facing OpenAI shapes (chat SSE, Responses)
    sidecar/providers  one adapter per provider kind
    sidecar/forward    attempts at a provider (the call, the relay)
    sidecar/proxy      the mitmproxy addon, serving, metrics
    sidecar/cli        the command line

Each layer imports only from the layers listed above it (``cli`` -> ``proxy`` -> ``forward`` ->
``providers`` -> ``apis`` -> ``core``). Read from the AST of every module, function-level imports
and ``TYPE_CHECKING`` blocks included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sidecar"
LAYERS = ("core", "apis", "providers", "forward", "state", "proxy", "cli")  # lowest first
PURE = ("core", "apis")
FOREIGN = ("mitmproxy", "httpx", "boto3", "botocore", "prometheus_client", "redis")
MAX_LINES = 400
PROVIDER_TYPES = {"openai", "bedrock"}
TYPE_FIELDS = {"type", "provider_type"}  # ProviderSpec.type, FlowState.provider_type


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def dotted(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "sidecar" and parts[1] in LAYERS else None


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, wherever it is written."""
    return imports_in(path.read_text("utf-8"), module=dotted(path),
                      is_package=path.name == "__init__.py")


def imports_in(source: str, *, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """The imports of ``source`` (the text of ``module``), relative ones resolved;
    ``from package import name`` yields ``package.name`` too (it may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (isinstance(node, ast.Call) and _callee(node) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


# ---------------------------------------------------------------------------------------------
# (a) the pure core imports no foreign I/O library, directly or through another module
# ---------------------------------------------------------------------------------------------


def test_the_pure_layers_import_no_io_library() -> None:
    found = [f"{rel(path)}:{line}: {name}"
             for layer in PURE for path in modules(PACKAGE / layer)
             for line, name in imports(path) if name.split(".")[0] in FOREIGN]
    assert not found, "imports of " + "/".join(FOREIGN) + " in the pure core:\n" + "\n".join(
        found)


BLOCKED_IMPORT = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys

    FOREIGN = {foreign!r}

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in FOREIGN:
                raise ImportError(f"blocked for the test: {{name}}")
            return None

    sys.meta_path.insert(0, Blocked())
    failed = []
    for package in {packages!r}:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, package + "."):
            try:
                importlib.import_module(info.name)
            except ImportError as e:
                failed.append(f"{{info.name}}: {{e}}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FOREIGN)
    print("\\n".join(failed + [f"loaded anyway: {{m}}" for m in loaded]))
""")


def test_the_pure_layers_import_with_the_io_libraries_absent() -> None:
    """Every module of sidecar.core and sidecar.apis imports in a fresh interpreter where
    mitmproxy, httpx, boto3, botocore, prometheus_client and redis cannot be imported: no
    module it imports (transitively) needs them either."""
    code = BLOCKED_IMPORT.format(foreign=set(FOREIGN),
                                 packages=[f"sidecar.{layer}" for layer in PURE])
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout


# ---------------------------------------------------------------------------------------------
# (b) module size
# ---------------------------------------------------------------------------------------------


def test_no_module_is_over_400_lines() -> None:
    sizes = {rel(path): len(path.read_text("utf-8").splitlines()) for path in modules()}
    over = sorted((n, name) for name, n in sizes.items() if n > MAX_LINES)
    assert not over, f"modules over {MAX_LINES} lines (aim for 300): " + ", ".join(
        f"{name} ({n})" for n, name in reversed(over))


# ---------------------------------------------------------------------------------------------
# (c) the provider kind is decided in sidecar/providers/ only
# ---------------------------------------------------------------------------------------------


def _names_a_provider_type(node: ast.expr) -> bool:
    """``"bedrock"``, or a tuple/list/set literal holding one."""
    if isinstance(node, ast.Constant):
        return node.value in PROVIDER_TYPES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_provider_type(e) for e in node.elts)
    return False


def _is_type_field(node: ast.expr) -> bool:
    """``spec.type``, ``state.provider_type``, a variable ``provider_type``."""
    return (isinstance(node, ast.Attribute) and node.attr in TYPE_FIELDS) or (
        isinstance(node, ast.Name) and node.id == "provider_type")


def _is_string_constant(node: ast.expr) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)) or (
        isinstance(node, ast.Tuple | ast.List | ast.Set) and bool(node.elts)
        and all(_is_string_constant(e) for e in node.elts))


def provider_type_tests(path: Path) -> Iterator[tuple[int, str]]:
    """Where ``path`` branches on a provider kind: a comparison with "openai"/"bedrock" (``==``,
    ``!=``, ``in``; ``call.kind == "bedrock"`` among them), a ``.type``/``provider_type``
    compared with a string, or ``case "bedrock":``. Comparing two providers' types with each
    other (``a.type == b.type``) names no kind and is not counted."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_a_provider_type(o) for o in operands) or (
                    any(_is_type_field(o) for o in operands)
                    and any(_is_string_constant(o) for o in operands)):
                yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.MatchValue) and _names_a_provider_type(node.value):
            yield node.lineno, f"case {ast.unparse(node.value)}"


def test_no_provider_type_comparison_outside_providers() -> None:
    found = [f"{rel(path)}:{line}: {text}" for path in modules()
             if path.relative_to(PACKAGE).parts[0] != "providers"
             for line, text in sorted(provider_type_tests(path))]
    assert not found, ("the provider kind is tested outside sidecar/providers/ (ask the "
                       "adapter instead):\n" + "\n".join(found))


def test_the_provider_type_scan_sees_each_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""
        if p.type == "bedrock": pass
        if call.kind != "openai": pass
        if kind in ("openai", "bedrock"): pass
        if state.provider_type == "x": pass
        match spec.type:
            case "bedrock": pass
        if route.kind == "pin": pass
        if a.type == b.type: pass
        if event.get("type") == "message": pass
    """))
    assert [line for line, _ in provider_type_tests(sample)] == [2, 3, 4, 5, 7]


# ---------------------------------------------------------------------------------------------
# (d) dependencies run one way
# ---------------------------------------------------------------------------------------------


def layer_violations() -> list[str]:
    """One line per import statement that reaches a higher layer."""
    out: dict[tuple[str, int], str] = {}
    for path in modules():
        here = layer_of(dotted(path))
        if here is None:
            continue
        allowed = LAYERS[: LAYERS.index(here) + 1]
        for line, name in imports(path):
            there = layer_of(name)
            if there is not None and there not in allowed:
                out.setdefault((rel(path), line), f"{rel(path)}:{line}: {here} imports {name}")
    return [out[key] for key in sorted(out)]


def test_dependencies_run_one_way() -> None:
    found = layer_violations()
    assert not found, ("imports against " + " -> ".join(reversed(LAYERS)) + ":\n"
                       + "\n".join(found))


def test_the_import_scan_resolves_relative_and_function_level_imports() -> None:
    source = ("from ..proxy import addon\n\ndef f():\n    from . import facts\n"
              "    import httpx\n    importlib.import_module('redis')\n")
    found = set(imports_in(source, module="sidecar.core.sample", is_package=False))
    assert {(1, "sidecar.proxy.addon"), (4, "sidecar.core.facts"), (5, "httpx"),
            (6, "redis")} <= found
    assert layer_of("sidecar.proxy.addon") == "proxy" and layer_of("sidecar.data") is None

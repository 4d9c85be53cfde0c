"""The package's public face: what `import cinejobs` offers, and that the handwritten _core
stubs match the extension module."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import cinejobs
from cinejobs import _core

STUB = Path(cinejobs.__file__).with_name("_core.pyi")


def test_public_api_is_reexported_with_all() -> None:
    expected = {
        "App",
        "Task",
        "JobHandle",
        "current_job",
        "CurrentJob",
        "Worker",
        "__version__",
        "CinejobsError",
        "ConfigError",
        "BrokerUnavailable",
        "InvalidPayload",
        "UnknownTask",
        "JobNotFound",
        "UniqueConflict",
        "JobCancelled",
        "JobTimeout",
        "JobFailed",
        "TmdbError",
        "TmdbAuthError",
        "RateLimiter",
        "Retry",
        "postgres",  # the module: cinejobs.postgres.enqueue(conn, task, ...)
        "Batcher",
        "BatcherFull",
        "BatcherClosed",
        "batch",  # the module: cinejobs.batch.PostgresSink, ElasticsearchSink, ...
        "tmdb",  # the module: cinejobs.tmdb.parse_release_name(name), rank_candidates(...)
        "ScheduleSpec",
        "ScheduleStatus",
        "Scheduler",
        "MetricsServer",  # GET /metrics in the Prometheus text format, from any process
        "redact",  # the URL (or message) with its secrets masked, for the host app's own logs
    }
    assert set(cinejobs.__all__) == expected
    for name in expected:
        assert hasattr(cinejobs, name), name
    assert cinejobs.__version__ == _core.__version__
    assert Path(cinejobs.__file__).with_name("py.typed").exists()


def _stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(STUB.read_text())
    names: set[str] = set()
    classes: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            classes[node.name] = {
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__")
            }
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names, classes


def test_core_stub_matches_the_extension_module() -> None:
    names, classes = _stub_names()
    runtime = {n for n in dir(_core) if not n.startswith("_")} | {"__version__"}
    assert names == runtime, (
        f"only in the stub: {names - runtime}; only in _core: {runtime - names}"
    )
    for cls, members in classes.items():
        actual = {n for n in dir(getattr(_core, cls)) if not n.startswith("_")}
        assert members == actual, (
            f"_core.{cls}: only in the stub: {members - actual}; only in _core: {actual - members}"
        )


def test_core_stub_signatures_match_the_extension_docstrings() -> None:
    # pybind11 writes each function's signature into its docstring; every keyword the stub
    # declares must appear there under the same name.
    tree = ast.parse(STUB.read_text())
    missing: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            owner: object = getattr(_core, node.name)
            functions = [(f"{node.name}.", item, 1) for item in node.body]
        elif isinstance(node, ast.FunctionDef):
            owner, functions = _core, [("", node, 0)]
        else:
            continue
        for prefix, item, skip in functions:
            if not isinstance(item, ast.FunctionDef) or item.decorator_list:
                continue
            doc = inspect.getdoc(getattr(owner, item.name)) or ""
            for arg in item.args.args[skip:] + item.args.kwonlyargs:
                if f"{arg.arg}:" not in doc.split("\n")[0]:
                    missing.append(f"_core.{prefix}{item.name}({arg.arg})")
    assert not missing, "parameters named in _core.pyi but not in the extension: " + ", ".join(
        missing
    )

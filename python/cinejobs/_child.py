"""A child process of a worker in process mode: ``python -m cinejobs._child APP_SPEC``.

The supervisor (``cinejobs worker --processes N``) starts each child with this command, the
socket to itself on fd 3 and its settings in ``CINEJOBS_CHILD_*`` variables. The child imports
the app once, builds the same runners as a thread-mode worker, and serves jobs in the C++ core
(:func:`cinejobs._core.run_child`) until the supervisor closes the socket; then the batchers it
opened are flushed at exit, as in any process.

``APP_SPEC`` is ``module:attribute``, or ``file:PATH:attribute`` for an app defined in a script
run as ``__main__``: the script is run again under another name, so its ``if __name__ ==
"__main__":`` block does not run, and its tasks keep the ``__main__.`` names the supervisor knows.
"""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from . import _core
from .errors import ConfigError
from .worker import _EventLoopThread, make_runner

if TYPE_CHECKING:
    from .app import App

__all__ = ["app_spec", "child_command", "load_app_spec"]

# The name a script's module gets in a child: any name but __main__.
_SCRIPT_MODULE = "__cinejobs_main__"


def app_spec(app: App) -> str:
    """How a child process imports ``app``: the spec the CLI loaded it from, else the first
    module-level name bound to it."""
    spec = getattr(app, "_import_spec", None)
    if spec:
        return str(spec)
    script: str | None = None
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if value is not app:
                continue
            if module_name != "__main__":
                return f"{module_name}:{attr}"
            path = getattr(module, "__file__", None)
            if script is None and path and os.path.isfile(path):
                script = f"file:{os.path.abspath(path)}:{attr}"
    # A script's name comes last: an importable module is imported without running the script.
    if script is not None:
        return script
    raise ConfigError(
        "process mode imports the app in each child process, but this App is bound to no "
        "module-level name: define it at module level (app = cinejobs.App(...)) or run "
        "`cinejobs worker --app module:attribute --processes N`"
    )


def child_command(app: App) -> list[str]:
    """The argv that starts one child process of ``app``."""
    return [sys.executable, "-m", "cinejobs._child", app_spec(app)]


def load_app_spec(spec: str) -> App:
    """Import the app a spec names (see the module's docstring)."""
    from .app import App

    if spec.startswith("file:"):
        path, _, attr = spec[len("file:") :].rpartition(":")
        namespace = runpy.run_path(path, run_name=_SCRIPT_MODULE)
        obj: Any = namespace.get(attr)
    else:
        module_name, _, attr = spec.partition(":")
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        obj = importlib.import_module(module_name)
        for part in (attr or "app").split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, App) and callable(obj):
            obj = obj()
    if not isinstance(obj, App):
        raise ConfigError(f"{spec!r} names a {type(obj).__qualname__}, not a cinejobs.App")
    return obj


def _runners(app: App, loop: Any) -> dict[str, Any]:
    runners: dict[str, Any] = {}
    for task in app.tasks.values():
        name = task.name
        if name.startswith(_SCRIPT_MODULE + "."):
            name = "__main__." + name[len(_SCRIPT_MODULE) + 1 :]
        runners[name] = make_runner(task, loop)
    return runners


def main(argv: list[str]) -> int:
    # The supervisor decides when jobs stop: a terminal's Ctrl-C is its to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if len(argv) != 2:
        print(
            "usage: python -m cinejobs._child APP_SPEC (started by a supervisor)", file=sys.stderr
        )
        return 2
    app = load_app_spec(argv[1])
    loops: list[_EventLoopThread] = []
    lock = threading.Lock()

    def event_loop() -> _EventLoopThread:
        with lock:
            if not loops:
                loops.append(_EventLoopThread("cinejobs-asyncio"))
                loops[0].start()
            return loops[0]

    if any(t.is_async for t in app.tasks.values()):
        event_loop()
    try:
        _core.run_child(_runners(app, event_loop))
    finally:
        for loop in loops:
            loop.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Reading a Celery task's cinejobs options.

``@app.task(base=..., unique_key=fn, ...)`` makes every option a class attribute of the task it
creates, so a plain function given as an option would bind to the task like a method: these
helpers read it unbound.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

__all__ = ["callable_option"]


def callable_option(task: Any, name: str) -> Callable[..., Any] | None:
    """The callable given as option ``name`` to the task's decorator (None when not given),
    unbound; raises TypeError naming the task when it is not callable."""
    value: Any = inspect.getattr_static(task, name, None)
    if isinstance(value, staticmethod):
        value = value.__func__
    if value is not None and not callable(value):
        raise TypeError(
            f"task {getattr(task, 'name', task)!r}: {name} must be a callable taking the task's "
            f"arguments, got {type(value).__qualname__}"
        )
    return cast(Callable[..., Any] | None, value)

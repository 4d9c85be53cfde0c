"""Unit tests of cinejobs.contrib.celery that need no worker process: message decoding, the
SUCCESS document (the same bytes Celery's backend writes), the CLI's refusals, the global rate
limit (deliveries run through Celery's own tracer, on a real redis-server) and the per-process
batchers. The same features under real workers: test_celery_example.py."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from celery import Celery, signals
from celery._state import _set_task_join_will_block, task_join_will_block
from celery.app.task import Context
from celery.app.trace import build_tracer

import cinejobs
from cinejobs import _core
from cinejobs.batch import Batcher
from cinejobs.context import _current
from cinejobs.contrib.celery import Task, batcher, close_batchers
from cinejobs.contrib.celery.rate_limit import Snoozed
from cinejobs.contrib.celery.worker import CeleryRunner, decode_body
from cinejobs.errors import ConfigError, UniqueConflict


def envelope(body: Any, content_type: str = "application/json") -> dict[str, Any]:
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": content_type,
        "headers": {},
        "properties": {"body_encoding": "base64"},
    }


def test_decode_body_reads_protocol_2_args_kwargs_and_embed() -> None:
    args, kwargs, embed = decode_body(envelope([[1, 2], {"x": 3}, {"callbacks": None}]))
    assert (args, kwargs, embed) == ([1, 2], {"x": 3}, {"callbacks": None})


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (envelope([[], {}, {}], "application/x-python-serialize"), "pickle is never decoded"),
        (envelope({"task": "old"}), r"protocol 2's \[args, kwargs, embed\]"),
        (envelope([{}, [], {}]), "not a list"),
        ({**envelope([[], {}, {}]), "body": "%%%"}, "cannot be decoded"),
    ],
)
def test_decode_body_refuses_what_it_cannot_run(message: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        decode_body(message)


@pytest.mark.parametrize("result", [{"a": [1, 2.5, None, "é"]}, _dt.datetime(2020, 1, 2, 3, 4)])
def test_the_success_document_is_the_one_celerys_backend_writes(result: Any) -> None:
    app = Celery("t", broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0")

    @app.task(shared=False)
    def task() -> None: ...

    context = Context({"id": "abc", "parent_id": "p", "group": "g", "args": [], "kwargs": {}})
    ours = json.loads(CeleryRunner(app, "host", None)._success_document(task, result, context))
    meta = task.backend._get_result_meta(
        result=result, state="SUCCESS", traceback=None, request=context
    )
    meta["task_id"] = "abc"
    celerys = json.loads(task.backend.encode(meta))
    assert ours.pop("date_done") and celerys.pop("date_done")
    assert ours == celerys


# Celery reads CELERY_* variables over an app's own settings: the CLI runs without them.
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cinejobs", *args],
        capture_output=True, text=True, timeout=60, env=CLEAN_ENV,
    )  # fmt: skip


def test_the_cli_refuses_a_celery_app_that_does_not_use_redis(tmp_path: Any) -> None:
    (tmp_path / "amqp_app.py").write_text(
        "from celery import Celery\napp = Celery('a', broker='amqp://guest@localhost//')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cinejobs", "worker", "--celery", "amqp_app:app"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=CLEAN_ENV,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "broker_url is 'amqp://guest@localhost//'" in proc.stderr
    assert proc.returncode == 2


def test_the_cli_names_a_celery_app_it_cannot_load() -> None:
    proc = run_cli("worker", "--celery", "no_such_module_here:app")
    assert proc.returncode == 2
    assert "cannot load --celery 'no_such_module_here:app'" in proc.stderr


# ---- The global rate limit ----
#
# A delivery is run the way Celery's worker runs it: build_tracer, with the request a worker
# builds from a message of the app's default queue.


@pytest.fixture
def celery_app(redis_server: Any) -> Iterator[Celery]:
    """A Celery app on the session's redis-server, with a queue of its own (so the messages a
    test finds there are its own) and a one-minute visibility timeout."""
    url = redis_server.url(db=4)
    app = Celery(f"t{uuid.uuid4().hex[:8]}", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_default_queue=f"q-{uuid.uuid4().hex[:8]}",
        broker_transport_options={"visibility_timeout": 60},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
    )
    # As in a worker process: the tasks sent here (snoozes, test messages) are not subscribed to
    # on the result backend, so no subscription outlives the test.
    blocking = task_join_will_block()
    _set_task_join_will_block(True)
    yield app
    _set_task_join_will_block(blocking)
    app.backend.client.close()
    unique_locks = getattr(app, "_cinejobs_unique_redis", None)
    if unique_locks is not None:
        unique_locks.close()
    app.close()


def task_of(app: Celery, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``@app.task`` for one test: a name of its own (limits are kept by task name in a store the
    session shares), not shared with the other tests' apps."""

    def register(fn: Callable[..., Any]) -> Any:
        name = f"{fn.__name__}-{uuid.uuid4().hex[:8]}"
        return app.task(shared=False, name=name, **options)(fn)

    return register


def deliver(task: Any, *args: Any, retries: int = 0, task_id: str | None = None) -> tuple[str, str]:
    """Run one delivery of ``task`` as Celery's worker does; return (task id, state)."""
    task = task.app.tasks[task.name]  # the task itself, not the decorator's proxy
    task_id = task_id or str(uuid.uuid4())
    request = {
        "id": task_id,
        "retries": retries,
        "delivery_info": {"exchange": "", "routing_key": task.app.conf.task_default_queue},
    }
    with warnings.catch_warnings():
        # Celery's Redis backend stores results with redis-py's deprecated setex.
        warnings.filterwarnings("ignore", "Call to deprecated setex", DeprecationWarning)
        traced = build_tracer(task.name, task, app=task.app)(task_id, list(args), {}, request)
    return task_id, traced.info.state if traced.info is not None else "SUCCESS"


def queued(app: Celery) -> list[dict[str, Any]]:
    """The messages waiting in the app's default queue, oldest first."""
    with redis.Redis.from_url(app.conf.broker_url) as client:
        messages = client.lrange(app.conf.task_default_queue, 0, -1)
    return [json.loads(m) for m in reversed(messages)]


def test_a_refused_delivery_is_published_again_unchanged_and_records_nothing(
    celery_app: Celery,
) -> None:
    runs: list[tuple[int, int]] = []

    @task_of(celery_app, bind=True, base=Task, global_rate_limit="1/h")
    def limited(self: Any, n: int) -> int:
        runs.append((n, self.request.retries))
        return n

    assert deliver(limited, 1, retries=2)[1] == "SUCCESS"
    before = _dt.datetime.now(_dt.UTC)
    task_id, state = deliver(limited, 2, retries=2)
    after = _dt.datetime.now(_dt.UTC)

    assert state == "IGNORED"  # ended without a state: neither a failure nor a retry
    assert runs == [(1, 2)]
    assert celery_app.AsyncResult(task_id).state == "PENDING"
    [message] = queued(celery_app)
    headers = message["headers"]
    assert (headers["id"], headers["task"], headers["retries"]) == (task_id, limited.name, 2)
    assert decode_body(message)[0] == [2]
    # The limit's wait is an hour; a message with an ETA waits in a worker, so it is held back
    # for half the visibility timeout at most (then asks again), never long enough to be
    # restored to a second worker.
    eta = _dt.datetime.fromisoformat(headers["eta"])
    assert before + _dt.timedelta(seconds=30) <= eta <= after + _dt.timedelta(seconds=30)


def test_a_snooze_keeps_the_unique_lock_of_the_task(celery_app: Celery) -> None:
    @task_of(
        celery_app, bind=True, base=Task, unique_key=lambda n: f"n:{n}", global_rate_limit="1/h"
    )
    def limited(self: Any, n: int) -> int:
        return n

    assert deliver(limited, 0)[1] == "SUCCESS"  # takes the hour's unit
    sent = limited.delay(7)
    with redis.Redis.from_url(celery_app.conf.broker_url) as client:
        client.delete(celery_app.conf.task_default_queue)  # as if a worker had taken it
    assert deliver(limited, 7, task_id=sent.id)[1] == "IGNORED"
    assert [m["headers"]["id"] for m in queued(celery_app)] == [sent.id]
    with pytest.raises(UniqueConflict) as conflict:
        limited.delay(7)
    assert conflict.value.existing_id == sent.id


def test_rate_limit_key_gives_each_key_its_own_limit(celery_app: Celery) -> None:
    @celery_app.task(
        shared=False,
        base=Task,
        global_rate_limit="1/h",
        rate_limit_key=lambda user, n: f"user:{user}",
    )
    def per_user(user: str, n: int) -> int:
        return n

    assert deliver(per_user, "ann", 1)[1] == "SUCCESS"
    assert deliver(per_user, "bob", 1)[1] == "SUCCESS"
    assert deliver(per_user, "ann", 2)[1] == "IGNORED"
    assert [decode_body(m)[0] for m in queued(celery_app)] == [["ann", 2]]


def test_a_key_function_that_returns_no_str_fails_the_task(celery_app: Celery) -> None:
    @task_of(celery_app, base=Task, global_rate_limit="1/h", rate_limit_key=lambda n: n)
    def bad_key(n: int) -> int:
        return n

    task_id, state = deliver(bad_key, 5)
    assert state == "FAILURE"
    result = celery_app.AsyncResult(task_id)
    assert isinstance(result.result, TypeError)
    assert "must return a str or None, got int" in str(result.result)


def test_an_unreachable_limit_store_holds_the_delivery_back_for_a_second(
    celery_app: Celery,
) -> None:
    runs: list[int] = []

    @task_of(
        celery_app, base=Task, global_rate_limit="5/s", rate_limit_store="redis://127.0.0.1:1/0"
    )
    def unlimited_if_unchecked(n: int) -> None:
        runs.append(n)

    before = _dt.datetime.now(_dt.UTC)
    assert deliver(unlimited_if_unchecked, 1)[1] == "IGNORED"
    after = _dt.datetime.now(_dt.UTC)
    assert runs == []
    [message] = queued(celery_app)
    eta = _dt.datetime.fromisoformat(message["headers"]["eta"])
    assert before + _dt.timedelta(seconds=1) <= eta <= after + _dt.timedelta(seconds=1)


def test_under_a_cinejobs_worker_a_refused_delivery_is_held_back_in_place(
    celery_app: Celery,
) -> None:
    @task_of(celery_app, base=Task, global_rate_limit="1/h")
    def limited(n: int) -> int:
        return n

    task = celery_app.tasks[limited.name]
    assert deliver(task, 1)[1] == "SUCCESS"
    # cinejobs' runner sets the current job and pushes the request, then calls the task.
    token = _current.set(cast(Any, object()))
    task.push_request(id=str(uuid.uuid4()), args=[2], kwargs={}, called_directly=False)
    try:
        with pytest.raises(Snoozed) as snoozed:
            task(2)
    finally:
        task.pop_request()
        _current.reset(token)
    assert snoozed.value.delay >= 3599  # the limit's wait, plus a spread
    assert queued(celery_app) == []  # the worker defers the message it holds; none is sent


def test_eager_runs_wait_for_the_limit_and_direct_calls_are_not_limited(
    celery_app: Celery,
) -> None:
    @task_of(celery_app, base=Task, global_rate_limit="20/s")
    def fast(n: int) -> int:
        return n

    @task_of(celery_app, base=Task, global_rate_limit="1/h")
    def slow(n: int) -> int:
        return n

    assert [fast.apply((n,)).result for n in range(3)] == [0, 1, 2]
    limiter = cinejobs.RateLimiter(f"celery:{fast.name}", "20/s", broker=celery_app.conf.broker_url)
    assert not limiter.try_acquire()  # the eager runs took the units, waiting for each
    assert [slow(n) for n in range(3)] == [0, 1, 2]  # a plain call, as Celery's own limit
    assert queued(celery_app) == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"global_rate_limit": "5 per s"}, ConfigError, "task 'tests.bad':.*5 per s"),
        ({"global_rate_limit": 5}, TypeError, "global_rate_limit must be a rate like"),
        ({"global_rate_limit": "5/s", "rate_limit_burst": 0}, ConfigError, "at least 1"),
        ({"rate_limit_key": lambda n: str(n)}, ConfigError, "needs a global_rate_limit"),
        ({"global_rate_limit": "5/s", "rate_limit_key": "n"}, TypeError, "must be a callable"),
    ],
)
def test_bad_rate_limit_options_are_refused_when_the_task_is_made(
    celery_app: Celery, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    def bad(n: int) -> int:
        return n

    with pytest.raises(error, match=message):
        celery_app.task(base=Task, name="tests.bad", shared=False, **options)(bad)
        celery_app.finalize()


def test_a_broker_that_cannot_keep_limits_is_named_with_what_to_do(celery_app: Celery) -> None:
    celery_app.conf.broker_url = "amqp://guest@127.0.0.1//"

    @task_of(celery_app, base=Task, global_rate_limit="5/s")
    def on_rabbit(n: int) -> int:
        return n

    task = celery_app.tasks[on_rabbit.name]
    task.push_request(id="x", args=[1], kwargs={}, called_directly=False)
    try:
        with pytest.raises(ConfigError, match="give rate_limit_store="):
            task(1)
    finally:
        task.pop_request()


def test_snooze_delays_spread_over_at_most_one_period() -> None:
    limiter = _core.RateLimiter("local", "spread", "5/s", 1)
    for wait in (0.0, 0.2, 3.0):
        delays = [limiter.snooze_delay(wait) for _ in range(200)]
        assert all(wait <= d <= wait + min(1.0, wait + 1.0) + 0.001 for d in delays), delays
        assert len(set(delays)) > 10  # spread, not one instant for every refused job


# ---- Process-wide batchers ----


def test_a_process_batcher_is_built_on_first_use_and_written_out_when_the_worker_stops(
    celery_app: Celery,
) -> None:
    written: list[Any] = []
    built: list[Batcher] = []

    @batcher(celery_app)
    def rows() -> Batcher:
        built.append(Batcher(written.extend, max_items=100, max_age=3600))
        return built[-1]

    assert built == []  # nothing at declaration: a prefork parent must not own one
    rows.add({"n": 1})
    rows.add_many([{"n": 2}, {"n": 3}])
    assert len(built) == 1 and written == []  # buffered in this process's one batcher
    signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
    assert written == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert built[0].closed
    rows.add({"n": 4})  # a worker started again in this process gets a new one
    assert len(built) == 2
    signals.worker_shutdown.send(sender=None)
    assert written == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]


def test_close_batchers_writes_out_one_apps_batchers(celery_app: Celery) -> None:
    other = Celery("other", set_as_current=False)
    written: list[str] = []
    mine = batcher(celery_app, name="mine")(lambda: Batcher(written.extend, max_age=3600))
    theirs = batcher(other, name="theirs")(lambda: Batcher(written.extend, max_age=3600))
    mine.add("a")
    theirs.add("b")
    close_batchers(celery_app)
    assert written == ["a"]
    theirs.close()
    assert written == ["a", "b"]


def test_a_task_finds_its_apps_batcher_by_name(celery_app: Celery) -> None:
    written: list[Any] = []

    @batcher(celery_app)
    def movies() -> Batcher:
        return Batcher(written.extend, max_age=3600)

    @task_of(celery_app, bind=True, base=Task)
    def store(self: Any, movie: dict[str, Any]) -> None:
        self.batcher("movies").add(movie)

    assert deliver(store, {"id": 1})[1] == "SUCCESS"
    assert celery_app.tasks[store.name].batcher("movies") is movies
    movies.flush()
    assert written == [{"id": 1}]
    with pytest.raises(ConfigError, match=r"no batcher named 'shows' \(declared: movies\)"):
        celery_app.tasks[store.name].batcher("shows")
    with pytest.raises(ConfigError, match="already has a batcher named 'movies'"):
        batcher(celery_app, name="movies")(lambda: Batcher(written.extend))
    movies.close()


def test_a_batcher_factory_must_return_a_batcher(celery_app: Celery) -> None:
    not_one = batcher(celery_app, name="not_one")(lambda: [])
    with pytest.raises(TypeError, match=r"returned list, not a cinejobs\.Batcher"):
        not_one.add(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork, as Celery's prefork pool")
def test_a_forked_pool_process_builds_its_own_batcher_and_never_writes_its_parents_items(
    celery_app: Celery, tmp_path: Path
) -> None:
    sink = tmp_path / "sink.jsonl"

    def append(items: list[Any]) -> None:
        with open(sink, "a") as out:
            out.writelines(json.dumps(item) + "\n" for item in items)

    @batcher(celery_app)
    def lines() -> Batcher:
        return Batcher(append, max_age=3600)

    lines.add("parent")  # buffered in the parent when the pool forks
    pid = os.fork()
    if pid == 0:  # the pool process: its own batcher, written out as it exits
        code = 1
        try:
            lines.add("child")
            signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    assert sink.read_text().splitlines() == ['"child"']
    lines.close()
    assert sink.read_text().splitlines() == ['"child"', '"parent"']

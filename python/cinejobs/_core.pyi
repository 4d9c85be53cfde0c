# Type stubs for cinejobs._core, the pybind11 extension. Private: use the cinejobs package.
# Times crossing this boundary are seconds as float (Python's convention); epoch times are ms.
import builtins
from collections.abc import Callable, Sequence
from typing import Any

__version__: str

# A job as a dict: id, task, queue, args (JSON text), kwargs (JSON text), priority, run_at,
# attempt, max_attempts, unique_key (str | None), timeout_ms, state, progress ({fraction, step,
# message} | None), result (JSON text | None), error ({type, message, traceback} | None),
# created_at, started_at, finished_at (epoch ms, 0 when not yet), cancel_requested.
JobDict = dict[str, Any]
# What a Python runner returns: the result as JSON text, or (error type, message, traceback),
# or (error type, message, traceback, retry at epoch ms) to choose when the job runs again, or
# (error type, message, traceback, retry at | None, action) where action is "retry" (the default:
# retried while attempts remain), "fail" (failed now), "retried" (the runner enqueued the next
# attempt itself, as a Celery retry does: this delivery ends, counted as a retry), "snooze" (held
# back until retry at, the attempt not counted) or "cancel" (ended cancelled).
RunnerResult = (
    str | tuple[str, str, str] | tuple[str, str, str, int] | tuple[str, str, str, int | None, str]
)

class Broker:
    def __init__(
        self,
        url: str,
        *,
        max_payload_bytes: int = 1048576,
        result_ttl: float = 86400.0,
    ) -> None: ...
    @property
    def url(self) -> str: ...
    @property
    def kind(self) -> str: ...
    def enqueue(
        self,
        task: str,
        queue: str,
        args_json: str,
        kwargs_json: str,
        priority: int,
        run_at_ms: int,
        max_attempts: int,
        unique_key: str | None,
        timeout_ms: int,
    ) -> tuple[str, bool]: ...
    # Each item: (task, queue, args_json, kwargs_json, priority, run_at_ms, max_attempts,
    # unique_key, timeout_ms), the same fields as enqueue.
    def enqueue_many(
        self, jobs: Sequence[tuple[str, str, str, str, int, int, int, str | None, int]]
    ) -> list[tuple[str, bool]]: ...
    def get(self, job_id: str) -> JobDict | None: ...
    def list(
        self,
        *,
        queue: str | None = None,
        state: str | None = None,
        task: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> builtins.list[JobDict]: ...
    # (queue, state, count); the method named list above shadows the builtin in this class.
    def counts(self) -> builtins.list[tuple[str, str, int]]: ...
    def cancel(self, job_id: str) -> str: ...
    def recover_expired(self) -> tuple[int, int]: ...
    def prune_finished(self) -> int: ...
    def purge(self, queue: str = "") -> int: ...
    # Blocks until the job may have changed (progress or state) or `timeout` seconds pass;
    # spurious returns are allowed (read the job, then wait again). Redis returns within a
    # round trip of the change; SQLite waits at most 20 ms (other processes cannot signal it).
    def wait_for_update(self, job_id: str, timeout: float) -> None: ...

class JobContext:
    @property
    def id(self) -> str: ...
    @property
    def task(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def args(self) -> str: ...
    @property
    def kwargs(self) -> str: ...
    @property
    def cancel_requested(self) -> bool: ...
    # "none", "cancelled", "timeout", "shutdown" or "lease_lost"
    @property
    def stop_reason(self) -> str: ...
    # Raises JobTimeout or JobCancelled once the job should stop; else returns at once.
    def raise_if_stopped(self) -> None: ...
    def progress(self, fraction: float, step: str = "", message: str = "") -> None: ...

# What Worker.add_observer takes: a JobEventQueue or a WorkerMetrics.
class JobObserver: ...

# Job events of the workers it observes, for a consumer thread (the job log). Each event is a
# dict: kind ("started", "succeeded", "failed", "retried", "cancelled", "snoozed",
# "released"), id, task, queue, attempt, max_attempts, at (epoch ms), duration (s), error
# (None or {"type", "message", "traceback"}), retry_at (epoch ms, 0 when none).
# The core's own messages (no job owns them): (level as logging's number, component,
# message, epoch ms). Installed, it receives every later message instead of stderr.
class LogQueue:
    def __init__(self, capacity: int = 10000) -> None: ...
    def take(self, max: int = 1000, timeout: float = 0.2) -> list[tuple[int, str, str, int]]: ...
    def close(self) -> None: ...
    @property
    def dropped(self) -> int: ...

def install_log_queue(queue: LogQueue | None) -> None: ...
def redact_url(text: str) -> str: ...

class JobEventQueue(JobObserver):
    # kinds: the event kinds kept ("started", "succeeded", "failed", "retried", "cancelled",
    # "snoozed", "released"); None keeps every kind.
    def __init__(self, capacity: int = 100000, kinds: Sequence[str] | None = None) -> None: ...
    # Waits up to timeout seconds (GIL released); at most max events, oldest first.
    def take(self, max: int = 1000, timeout: float = 0.2) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...
    @property
    def dropped(self) -> int: ...

# Worker options: each argument left None takes the core's default (cpp/include/cinejobs/
# worker.hpp, the one place defaults are written); the properties read what was chosen.
# Durations are seconds; max_memory_per_child is MB.
class WorkerOptions:
    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        queue_concurrency: dict[str, int] | None = None,
        max_batch: int | None = None,
        lease: float | None = None,
        heartbeat: float | None = None,
        poll_interval: float | None = None,
        grace: float | None = None,
        maintenance_interval: float | None = None,
        worker_id: str | None = None,
        processes: int | None = None,
        child_command: Sequence[str] | None = None,
        hard_timeout: float | None = None,
        kill_grace: float | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None: ...
    @property
    def queues(self) -> list[str]: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def queue_concurrency(self) -> dict[str, int]: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def lease(self) -> float: ...
    @property
    def heartbeat(self) -> float: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def grace(self) -> float: ...
    @property
    def maintenance_interval(self) -> float: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def processes(self) -> int: ...
    @property
    def child_command(self) -> list[str]: ...
    @property
    def hard_timeout(self) -> float: ...
    @property
    def kill_grace(self) -> float: ...
    @property
    def max_jobs_per_child(self) -> int: ...
    @property
    def max_memory_per_child(self) -> int: ...

class Worker:
    def __init__(self, broker: Broker, options: WorkerOptions) -> None: ...
    @property
    def options(self) -> WorkerOptions: ...
    # runner is called on a handler thread with the GIL held, once per job.
    def register(
        self,
        task: str,
        runner: Callable[[JobContext], RunnerResult],
        *,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 600.0,
        rate_limiter: RateLimiter | None = None,
        rate_limit_key: Callable[[str, str], str] | None = None,
        hard_timeout: float = 0.0,
    ) -> None: ...
    # Process mode: jobs of `task` run in the child processes (which have its runner).
    def register_child_task(
        self,
        task: str,
        *,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 600.0,
        rate_limiter: RateLimiter | None = None,
        rate_limit_key: Callable[[str, str], str] | None = None,
        hard_timeout: float = 0.0,
    ) -> None: ...
    # Before start(): the observer receives every job event of this worker.
    def add_observer(self, observer: JobObserver) -> None: ...
    # Adds the native handlers cinejobs.noop, cinejobs.sleep and cinejobs.prune.
    def register_builtins(self) -> None: ...
    def register_tmdb(
        self,
        *,
        rate: str | None = ...,
        film_store: str | None = ...,
        cache: str | None = ...,
        rate_limit_store: str | None = ...,
        sync_url: str | None = ...,
    ) -> None: ...
    def has_handler(self, task: str) -> bool: ...
    def start(self) -> None: ...
    # Returns {"finished": int, "returned": int, "clean": bool}. grace < 0: the worker's own.
    def stop(self, grace: float = -1.0) -> dict[str, Any]: ...
    @property
    def running(self) -> bool: ...
    # reserved, succeeded, failed, retried, cancelled, released, lost, snoozed, running, slots,
    # children, child_restarts ({cause: count})
    def stats(self) -> dict[str, Any]: ...

# In a child process of process mode: serve the supervisor with these runners (by task name)
# until it closes the socket. Reads CINEJOBS_CHILD_* from the environment.
def run_child(runners: dict[str, Callable[[JobContext], RunnerResult]]) -> None: ...

# A rate limit held in a store: "local" (this process) or a broker URL (shared by every process
# on that broker). Raises ConfigError for a bad rate, burst, name or URL.
class RateLimiter:
    def __init__(self, store: str, name: str, rate: str, burst: int = 1) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def rate(self) -> str: ...
    @property
    def burst(self) -> int: ...
    @property
    def store_kind(self) -> str: ...
    # (admitted, seconds to wait before the same request could be admitted)
    def try_acquire(self, n: int = 1, key: str = "") -> tuple[bool, float]: ...
    # Waits with the GIL released; False when the timeout cannot be met.
    def acquire(self, n: int = 1, timeout: float | None = None, key: str = "") -> bool: ...
    def pause_for(self, seconds: float, key: str = "") -> None: ...
    # Seconds to hold back a job refused with `wait`: the wait plus a random spread.
    def snooze_delay(self, wait: float) -> float: ...

# Normalises a rate ("20/s", "40/10s", "100/m"); raises ConfigError naming bad text.
def parse_rate(text: str) -> str: ...
def new_job_id() -> str: ...
def now_ms() -> int: ...

# JSON wire form of a job as every broker stores it.
def job_to_json(job: JobDict) -> str: ...
def job_from_json(text: str) -> JobDict: ...

# Applies the broker store's pending schema migrations (PostgreSQL; SQLite and Redis need none)
# under an advisory lock and returns the versions applied, in order; [] when up to date.
# Raises ConfigError for a schema newer than this cinejobs knows.
def migrate(url: str) -> list[int]: ...

# The INSERT that enqueues one job into `schema`.jobs, for running on the caller's own psycopg or
# Django connection inside the caller's transaction (the job exists iff that transaction
# commits). Validates the fields exactly as Broker.enqueue does (raises InvalidPayload; a bad
# schema name raises ConfigError). Returns (sql, params): sql uses %s placeholders and contains no
# other '%'; params are str | int | None in placeholder order (params[0] is the new job's id).
# Executed, the statement yields one row (id: str, created: bool): created is False when a live
# job holds the unique key and id then names it; no row when that holder committed after the
# caller's snapshot (treat as not created). Workers are notified when the transaction commits.
def postgres_enqueue_statement(
    schema: str,
    task: str,
    queue: str,
    args_json: str,
    kwargs_json: str,
    priority: int,
    run_at_ms: int,
    max_attempts: int,
    unique_key: str | None,
    timeout_ms: int,
    *,
    max_payload_bytes: int = 1048576,
) -> tuple[str, list[str | int | None]]: ...

# Batching (cinejobs.batch is the public face). Items cross as JSON text.
class BatchSink: ...
class DeadLetter: ...

def postgres_sink(url: str, table: str, key: Sequence[str], copy: bool) -> BatchSink: ...
def elasticsearch_sink(
    base_url: str, index: str, id_field: str, timeout: float, headers: Sequence[str]
) -> BatchSink: ...
def null_sink() -> BatchSink: ...
def jsonl_dead_letter(path: str) -> DeadLetter: ...
def postgres_dead_letter(url: str, table: str) -> DeadLetter: ...

# A callable sink gets the batch's JSON texts and returns None (all delivered) or one
# (outcome, error) pair per item: 0 delivered, 1 retry, 2 failed.
SinkCallable = Callable[[list[str]], Sequence[tuple[int, str]] | None]

class Batcher:
    def __init__(
        self,
        sink: BatchSink | SinkCallable,
        *,
        max_items: int,
        max_bytes: int,
        max_age: float,
        capacity: int,
        max_attempts: int,
        retry_backoff: float,
        retry_backoff_max: float,
        name: str,
        dead_letter: DeadLetter | None,
    ) -> None: ...
    def add(self, item: str, block: bool = True, timeout: float | None = None) -> None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def undelivered(self) -> list[dict[str, Any]]: ...

# A Broker over a Celery app's Redis broker in kombu's layout (cinejobs/celery.hpp); results
# go to the Redis result backend at backend_url ("" for none).
def open_celery_broker(
    broker_url: str,
    *,
    backend_url: str = "",
    visibility_timeout: float = 3600.0,
    result_expires: float = 86400.0,
) -> Broker: ...

# Release names and title matching (cinejobs.tmdb wraps these). A parsed name is a dict: title,
# year, season, episode, last_episode, air_date, resolution, source, codec, audio, channels,
# group (None where the name does not say), tags (list[str]), kind ("movie", "episode",
# "season" or "unknown"), enrichable (bool), reason (str | None).
def parse_release_name(name: str) -> dict[str, Any]: ...
def normalize_title(title: str) -> str: ...
def title_similarity(a: str, b: str) -> float: ...

# candidates: (id, title, original_title, year, popularity). Returns them best first, each with
# (confidence, similarity, year_score) appended.
def rank_candidates(
    title: str,
    year: int | None,
    original_title: str,
    candidates: Sequence[tuple[int, str, str, int | None, float]],
) -> list[tuple[int, str, str, int | None, float, float, float, float]]: ...

# (title, year) of each fallback search, in the order to try them.
def search_fallbacks(
    title: str, year: int | None, original_title: str
) -> list[tuple[str, int | None]]: ...

# When a schedule ticks: a cron expression in an IANA zone, an interval on a grid from
# anchor_ms, or one instant. Construction raises ConfigError naming what is wrong.
class ScheduleTiming:
    @staticmethod
    def cron(expression: str, tz: str = "UTC") -> ScheduleTiming: ...
    @staticmethod
    def every(seconds: float, anchor_ms: int = 0) -> ScheduleTiming: ...
    @staticmethod
    def once(at_ms: int) -> ScheduleTiming: ...
    # The first tick strictly after after_ms (epoch ms); None when none is left.
    def next_after(self, after_ms: int) -> int | None: ...
    def describe(self) -> str: ...

# (name, task, args_json, kwargs_json, queue, priority, max_attempts, timeout_ms, timing,
#  grace seconds or None, catch_up)
ScheduleTuple = tuple[str, str, str, str, str, int, int, int, ScheduleTiming, float | None, int]

# A scheduler thread enqueuing the ticks of its schedules through Broker.enqueue_tick.
class Scheduler:
    def __init__(
        self,
        broker: Broker,
        schedules: list[ScheduleTuple],
        *,
        max_sleep: float = 1.0,
        history_retention: float = 604800.0,
        prune_every: float = 3600.0,
        prune_queue: str = "default",
    ) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def running(self) -> bool: ...
    @property
    def last_error(self) -> str: ...
    # Offers the ticks due at now_ms; returns (tick ms, job id) of those this call enqueued.
    def run_due(self, now_ms: int) -> list[tuple[int, str]]: ...
    @property
    def names(self) -> list[str]: ...

# (name, last tick ms, next tick ms or 0, last job id) of every recorded schedule, by name.
def schedule_states(broker: Broker) -> list[tuple[str, int, int, str]]: ...

# (tick ms, job id, enqueued at ms) of a schedule's recorded ticks, newest first.
def schedule_history(broker: Broker, name: str, limit: int = 100) -> list[tuple[int, str, int]]: ...
def prune_schedule_history(broker: Broker, before_ms: int) -> int: ...

# HTTP response bodies by key in "memory" (this process) or a broker's store (sqlite://,
# redis://, postgresql://); one cache per URL in a process. Raises ConfigError for a bad URL or
# a PostgreSQL schema not migrated to version 4.
class ResponseCache:
    def __init__(self, url: str) -> None: ...
    @property
    def kind(self) -> str: ...
    def get(self, key: str) -> str | None: ...
    # ttl in seconds, rounded up to whole seconds; 0 removes the entry.
    def put(self, key: str, body: str, ttl: float) -> None: ...
    def prune(self) -> int: ...

# TMDB's v3 API through the response cache and the shared "tmdb" rate limiter. Unset (None)
# credentials and base URL come from TMDB_API_KEY, TMDB_READ_TOKEN and TMDB_BASE_URL. Bodies
# are returned as JSON text; None is TMDB's "not found". Raises TmdbAuthError, TmdbError.
class TmdbClient:
    def __init__(
        self,
        *,
        api_key: str | None,
        read_token: str | None,
        base_url: str | None,
        language: str,
        timeout: float,
        connect_timeout: float,
        max_attempts: int,
        backoff: float,
        rate_limit: str | None,
        rate_limit_store: str,
        cache: str | None,
        cache_ttl: float,
    ) -> None: ...
    @property
    def base_url(self) -> str: ...
    @property
    def language(self) -> str: ...
    # "read_token" or "api_key": the credential sent
    @property
    def auth(self) -> str: ...
    @property
    def cache_kind(self) -> str | None: ...
    def get(self, path: str, params: list[tuple[str, str]]) -> str | None: ...
    def search_movie(
        self,
        query: str,
        year: int | None,
        primary_release_year: int | None,
        language: str,
        include_adult: bool,
        page: int,
    ) -> str: ...
    def search_tv(
        self,
        query: str,
        first_air_date_year: int | None,
        language: str,
        include_adult: bool,
        page: int,
    ) -> str: ...
    def movie(self, id: int, append_to_response: str) -> str | None: ...
    def tv(self, id: int, append_to_response: str) -> str | None: ...
    def find_by_imdb_id(self, imdb_id: str) -> str: ...
    # {"secure_base_url": str, "poster_sizes": list[str]}, fetched once per client
    def images(self) -> dict[str, Any]: ...
    # requests, cache_hits, retries, rate_limited, not_found (ints), limiter_wait (seconds)
    def stats(self) -> dict[str, Any]: ...

class FilmStore:
    def __init__(self, url: str) -> None: ...
    @property
    def kind(self) -> str: ...
    def create_session(self, source: str, films: list[dict[str, Any]]) -> str: ...
    def session(self, id: str) -> dict[str, Any] | None: ...
    def sessions(self, limit: int = ...) -> list[dict[str, Any]]: ...
    def film(self, session_id: str, position: int) -> dict[str, Any] | None: ...
    def films(self, session_id: str, status: str | None = ...) -> list[dict[str, Any]]: ...
    def search(self, text: str, limit: int = ...) -> list[dict[str, Any]]: ...

def enrich_unique_key(session_id: str, position: int) -> str: ...
def enrich_kwargs(session_id: str, position: int) -> str: ...

TMDB_ENRICH_TASK: str
TMDB_SYNC_TASK: str
TMDB_QUEUE: str

# Metrics (metrics.hpp): a worker's job counters, rendered with the process-wide counters, the
# worker's gauges and the broker's queue depth in the Prometheus text format (0.0.4).
class WorkerMetrics(JobObserver):
    def __init__(self) -> None: ...

# One scrape; the GIL is released while the broker's counts are read. A broker that fails
# leaves the rest (cinejobs_queue_depth_up 0).
def render_metrics(
    worker: Worker | None = None,
    metrics: WorkerMetrics | None = None,
    broker: Broker | None = None,
) -> str: ...

# cause: "crashed", "hard_timeout", "max_jobs" or "max_memory".
def count_child_restart(cause: str) -> None: ...

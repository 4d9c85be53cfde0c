"""The no-op tasks bench_redis.py runs, one module per system, each importable by that
system's own worker process (the bench puts bench/ on PYTHONPATH).

Every system gets the same two tasks: ``noop`` (returns at once) and ``stamp(seq)``, which
first reads the monotonic clock (shared by every process on the machine) and then pushes
"<seq> <ns>" to the Redis list STAMPS, so the bench can measure enqueue-to-start latency.
"""

"""The tasks bench_processes.py runs, one module per engine, each importable by that engine's
worker processes (the bench puts bench/ on PYTHONPATH): ``noop`` returns at once; ``spin(n)``
runs :func:`workload.spin`, the same pure-Python arithmetic for both engines, ``n`` being the
loop count the bench calibrated to about 5 ms."""

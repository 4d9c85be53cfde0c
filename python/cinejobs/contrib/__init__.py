"""Integrations with web frameworks and other job systems, each in its own module that
imports its framework lazily, so ``import cinejobs`` never needs FastAPI, Django or Celery:
``cinejobs.contrib.fastapi``, ``cinejobs.contrib.django``, ``cinejobs.contrib.celery``."""

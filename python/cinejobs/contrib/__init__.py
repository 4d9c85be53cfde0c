"""Framework glue. Each module imports its framework lazily: ``import cinejobs`` never needs
FastAPI, Django or Celery."""

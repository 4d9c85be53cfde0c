"""An ordinary Celery app: nothing in it knows about cinejobs except the Step 1 wrapper a few tasks
use. Run it with either worker:

    celery -A proj.celery:app worker
    cinejobs worker --celery proj.celery:app
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery(
    "proj",
    broker=REDIS_URL,
    backend=os.environ.get("CELERY_RESULT_BACKEND", REDIS_URL),
    include=["proj.tasks"],
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Redelivery after a worker dies; kept short so the example's tests see it.
    broker_transport_options={"visibility_timeout": 60},
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # These have queues of their own, so the tests can give them workers of their own.
    task_routes={
        "proj.tasks.count": {"queue": "counting"},
        "proj.tasks.call_upstream": {"queue": "limited"},
        "proj.tasks.store_movie": {"queue": "batching"},
    },
)

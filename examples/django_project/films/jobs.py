"""The films app's tasks (found by cinejobs.contrib.django at start-up)."""

from django.utils import timezone

from cinejobs.contrib.django import app

from .models import Film


@app.task(name="films.enrich", queue="films")
def enrich(film_id: int) -> dict[str, object]:
    """The one-off job each new film gets, 2 s after the request that created it."""
    updated = Film.objects.filter(pk=film_id, enriched_at__isnull=True).update(
        enriched_at=timezone.now()
    )
    return {"film_id": film_id, "updated": updated}

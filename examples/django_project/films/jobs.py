"""The films app's tasks (found by cinejobs.contrib.django at start-up): the enrichment each new
film gets once, and the two periodic jobs settings.CINEJOBS["SCHEDULES"] declares."""

from datetime import timedelta

from django.utils import timezone

from cinejobs import JobNotFound
from cinejobs.contrib.django import app

from .models import Film


@app.task(name="films.enrich", queue="films")
def enrich(film_id: int) -> dict[str, object]:
    """The one-off job each new film gets, 2 s after the request that created it."""
    updated = Film.objects.filter(pk=film_id, enriched_at__isnull=True).update(
        enriched_at=timezone.now()
    )
    return {"film_id": film_id, "updated": updated}


@app.task(name="films.cleanup", queue="films")
def cleanup(older_than_hours: float = 24) -> dict[str, int]:
    """Nightly: delete the films still not enriched long after they were added (their
    enrichment failed for good, so they would stay half-made forever)."""
    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    deleted, _ = Film.objects.filter(enriched_at__isnull=True, created_at__lt=cutoff).delete()
    return {"deleted": deleted}


@app.task(name="films.prune_job_ids", queue="films")
def prune_job_ids() -> dict[str, int]:
    """Weekly: forget the enrichment job ids the broker no longer holds (it deletes finished
    jobs after its result_ttl), so a film never links to a job that cannot be shown."""
    gone = []
    for pk, job_id in Film.objects.exclude(enrich_job="").values_list("pk", "enrich_job"):
        try:
            app.get_job(job_id)
        except JobNotFound:
            gone.append(pk)
    Film.objects.filter(pk__in=gone).update(enrich_job="")
    return {"forgotten": len(gone)}

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from cinejobs.contrib.django import enqueue_on_commit

from .models import Film


@csrf_exempt
@require_POST
def add_film(request: HttpRequest) -> JsonResponse:
    """Create a film and its enrichment job, run 2 s later; both or neither (?fail=1 makes
    the request fail after both were written, to show the rollback)."""
    title = json.loads(request.body or b"{}").get("title", "")
    if not title:
        return JsonResponse({"error": "a title is required"}, status=400)
    try:
        with transaction.atomic():
            film = Film.objects.create(title=title)
            job_id = enqueue_on_commit("films.enrich", film.pk, delay=2, queue="films")
            film.enrich_job = str(job_id or "")
            film.save(update_fields=["enrich_job"])
            if request.GET.get("fail"):
                raise RuntimeError("the request failed after writing")
    except RuntimeError as exc:
        return JsonResponse({"error": str(exc)}, status=500)
    return JsonResponse({"film_id": film.pk, "job_id": film.enrich_job}, status=201)


@require_GET
def film(request: HttpRequest, film_id: int) -> JsonResponse:
    item = get_object_or_404(Film, pk=film_id)
    return JsonResponse(
        {
            "film_id": item.pk,
            "title": item.title,
            "created_at": item.created_at.isoformat(),
            "enriched_at": item.enriched_at.isoformat() if item.enriched_at else None,
            "job_id": item.enrich_job,
        }
    )

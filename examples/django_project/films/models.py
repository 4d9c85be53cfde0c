from django.db import models


class Film(models.Model):
    title = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    enriched_at = models.DateTimeField(null=True, blank=True)
    enrich_job = models.CharField(max_length=36, blank=True)

    def __str__(self) -> str:
        return self.title

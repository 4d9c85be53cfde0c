"""``path("admin/cinejobs/", include("cinejobs.contrib.django.urls"))`` mounts the staff page of
jobs (before the ``admin/`` entry, so the admin's catch-all does not take it)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "cinejobs"
urlpatterns = [path("", views.jobs, name="jobs")]

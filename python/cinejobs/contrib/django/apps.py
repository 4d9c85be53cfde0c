"""Django's entry point for cinejobs: points the project's App at its broker and imports
every installed app's ``jobs`` module so their tasks are registered."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CinejobsConfig(AppConfig):
    name = "cinejobs.contrib.django"
    label = "cinejobs"
    verbose_name = "cinejobs"

    def ready(self) -> None:
        from .conf import broker_url
        from .project import app

        app.use_broker(broker_url())
        autodiscover_modules("jobs")

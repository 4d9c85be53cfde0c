"""Django's entry point for cinejobs: points the project's App at its broker, imports every
installed app's ``jobs`` module so their tasks are registered, then declares the schedules of
the settings."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class CinejobsConfig(AppConfig):
    name = "cinejobs.contrib.django"
    label = "cinejobs"
    verbose_name = "cinejobs"

    def ready(self) -> None:
        from .conf import broker_url, configure_schedules
        from .project import app

        app.use_broker(broker_url())
        autodiscover_modules("jobs")
        configure_schedules(app)

"""The project's cinejobs App. Created empty at import so that ``jobs.py`` modules can use
``@app.task`` whenever they are imported; its broker URL is set from the settings when Django
starts (CinejobsConfig.ready), before anything is enqueued."""

from __future__ import annotations

from ...app import App

app = App()


def setup_app() -> App:
    """The project's App after Django has started (settings, jobs.py modules imported): what
    ``manage.py cinejobs_worker`` runs, and what each child process of its process mode imports,
    since a spawned child starts with no Django of its own."""
    import django

    django.setup()
    return app

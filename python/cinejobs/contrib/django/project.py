"""The project's cinejobs App. Created empty at import so that ``jobs.py`` modules can use
``@app.task`` whenever they are imported; its broker URL is set from the settings when Django
starts (CinejobsConfig.ready), before anything is enqueued."""

from __future__ import annotations

from ...app import App

app = App()

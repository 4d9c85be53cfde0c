"""The filmsite example's own tests, run by Django's test runner against a real PostgreSQL
(FILMSITE_DB_* settings), with jobs executed by a real ``manage.py cinejobs_worker`` process."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import TransactionTestCase

from cinejobs.contrib.django import app

from .models import Film

PROJECT = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout=30.0, what="a condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class FilmJobsTest(TransactionTestCase):
    worker: subprocess.Popen

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        call_command("cinejobs_migrate")
        cls.log = open(PROJECT / "worker-test.log", "wb")  # noqa: SIM115
        cls.worker = subprocess.Popen(
            [sys.executable, "manage.py", "cinejobs_worker", "--grace", "5"],
            cwd=PROJECT,
            stdout=cls.log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )

    @classmethod
    def tearDownClass(cls):
        cls.worker.send_signal(signal.SIGTERM)
        try:
            cls.worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cls.worker.kill()
            cls.worker.wait()
        cls.log.close()
        app.close()  # its pooled connections to the database go with it
        super().tearDownClass()

    def test_a_new_film_is_enriched_by_the_worker_two_seconds_after_the_request(self):
        response = self.client.post(
            "/films/", json.dumps({"title": "Heat"}), content_type="application/json"
        )
        self.assertEqual(response.status_code, 201)
        body = response.json()
        job = app.get_job(body["job_id"]).info()
        # The broker is the project's own database: the job was inserted in the request's
        # transaction, so it exists now, scheduled 2 s ahead.
        self.assertEqual(job["state"], "scheduled")
        self.assertEqual(job["args"], [body["film_id"]])

        film = wait_for(
            lambda: Film.objects.filter(pk=body["film_id"], enriched_at__isnull=False).first(),
            what="the worker to enrich the film",
        )
        self.assertGreaterEqual(film.enriched_at - film.created_at, timedelta(seconds=1.9))
        self.assertEqual(app.get_job(body["job_id"]).wait(timeout=10), "succeeded")
        self.assertEqual(self.client.get(f"/films/{film.pk}/").json()["title"], "Heat")

    def test_a_failed_request_leaves_neither_film_nor_job(self):
        jobs_before = len(app.jobs(task="films.enrich", limit=10000))
        response = self.client.post(
            "/films/?fail=1", json.dumps({"title": "Ran"}), content_type="application/json"
        )
        self.assertEqual(response.status_code, 500)
        self.assertFalse(Film.objects.filter(title="Ran").exists())
        self.assertEqual(len(app.jobs(task="films.enrich", limit=10000)), jobs_before)

    def test_staff_see_the_jobs_page_and_others_are_sent_to_log_in(self):
        response = self.client.post(
            "/films/", json.dumps({"title": "Ikiru"}), content_type="application/json"
        )
        job_id = response.json()["job_id"]
        anonymous = self.client.get("/admin/cinejobs/")
        self.assertEqual(anonymous.status_code, 302)
        self.assertIn("/admin/login/", anonymous["Location"])
        staff = User.objects.create_superuser("admin", "admin@example.org", "pw")
        self.client.force_login(staff)
        page = self.client.get("/admin/cinejobs/?task=films.enrich")
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, job_id)
        self.assertContains(page, "films.enrich")

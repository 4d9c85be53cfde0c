"""The filmsite example's own tests, run by Django's test runner against a real PostgreSQL
(FILMSITE_DB_* settings), with jobs executed by a real ``manage.py cinejobs_worker`` process
and ticks enqueued by real ``manage.py cinejobs_scheduler`` processes."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import TransactionTestCase
from django.utils import timezone

import cinejobs
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


def run_as_ticked(name):
    """Enqueue the job a tick of schedule ``name`` enqueues (its task, arguments and queue) and
    return its result once the worker ran it; the schedule's own ticks are hours away."""
    spec = app.declared_schedules[name]
    handle = app.enqueue(
        spec.task, json.loads(spec.args_json), json.loads(spec.kwargs_json), queue=spec.queue
    )
    assert handle.wait(timeout=30) == "succeeded", handle.info()
    return handle.result()


def stop(process, timeout=30):
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


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
        stop(cls.worker)
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
        # The broker URL is shown with its password masked, the rest readable.
        password = os.environ.get("FILMSITE_DB_PASSWORD")
        if password:
            self.assertNotContains(page, password)
            self.assertContains(page, "postgresql://postgres:***@")

    def test_the_staff_page_lists_the_schedules_with_their_ticks(self):
        # A schedule ticked by a scheduler of another App on the broker: the page reads the
        # ticks the broker recorded, not this process's memory.
        other = cinejobs.App(app.broker_url)
        other.schedule("cinejobs.noop", every="1s", name="staff-page-tick", queue="films")
        with other.scheduler(prune_every=0):
            ticked = wait_for(
                lambda: other.schedule_history("staff-page-tick"), what="a tick of staff-page-tick"
            )
        other.close()
        self.client.force_login(User.objects.create_superuser("admin", "a@example.org", "pw"))
        page = self.client.get("/admin/cinejobs/")
        self.assertEqual(page.status_code, 200)
        rows = {
            row.split("</td>", 1)[0]: row
            for row in page.content.decode().split('<tr class="cinejobs-schedule"><td>')[1:]
        }
        # Declared in settings, or only recorded in the broker (other tests' schedules too).
        self.assertLessEqual(
            {"films-cleanup-nightly", "films-prune-weekly", "staff-page-tick"}, set(rows)
        )
        nightly = rows["films-cleanup-nightly"]
        self.assertIn("cron 0 2 * * * (Europe/Paris)", nightly)
        self.assertIn("<td>never</td>", nightly)  # its first tick is at the next 02:00
        self.assertRegex(nightly, r"<td>\d{4}-\d\d-\d\d 02:00:00 CES?T</td>")
        self.assertIn("cron 30 3 * * sun (Europe/Paris)", rows["films-prune-weekly"])
        self.assertRegex(rows["films-prune-weekly"], r"03:30:00 CES?T</td>")
        tick = rows["staff-page-tick"]
        self.assertIn(ticked[0][1], tick)  # the last job's id
        self.assertIn(ticked[0][0].strftime("%Y-%m-%d %H:%M:%S"), tick)  # its tick, in UTC

    def test_the_nightly_cleanup_deletes_films_left_unenriched_for_a_day(self):
        spec = app.declared_schedules["films-cleanup-nightly"]
        self.assertEqual(spec.task, "films.cleanup")
        # 02:00 in Paris: 01:00 UTC in winter, 00:00 UTC in summer.
        winter = spec.next_tick(datetime(2025, 1, 10, 12, tzinfo=UTC))
        summer = spec.next_tick(datetime(2025, 7, 10, 12, tzinfo=UTC))
        self.assertEqual(winter, datetime(2025, 1, 11, 1, tzinfo=UTC))
        self.assertEqual(summer, datetime(2025, 7, 11, 0, tzinfo=UTC))

        stale = Film.objects.create(title="Stalker")
        done = Film.objects.create(title="Solaris", enriched_at=timezone.now())
        Film.objects.filter(pk__in=[stale.pk, done.pk]).update(
            created_at=timezone.now() - timedelta(days=2)
        )
        fresh = Film.objects.create(title="Mirror")  # its enrichment may still come
        self.assertEqual(run_as_ticked("films-cleanup-nightly"), {"deleted": 1})
        self.assertEqual(set(Film.objects.values_list("pk", flat=True)), {done.pk, fresh.pk})

    def test_the_weekly_pruning_forgets_job_ids_the_broker_no_longer_holds(self):
        spec = app.declared_schedules["films-prune-weekly"]
        self.assertEqual(spec.task, "films.prune_job_ids")
        # From Wednesday 8 January 2025 to Sunday the 12th, 03:30 in Paris (CET, UTC+1).
        wednesday = datetime(2025, 1, 8, tzinfo=UTC)
        self.assertEqual(spec.next_tick(wednesday), datetime(2025, 1, 12, 2, 30, tzinfo=UTC))

        live = self.client.post(
            "/films/", json.dumps({"title": "Rashomon"}), content_type="application/json"
        ).json()
        pruned = Film.objects.create(title="Vertigo", enrich_job=str(uuid.uuid4()))
        self.assertEqual(run_as_ticked("films-prune-weekly"), {"forgotten": 1})
        pruned.refresh_from_db()
        self.assertEqual(pruned.enrich_job, "")
        self.assertEqual(Film.objects.get(pk=live["film_id"]).enrich_job, live["job_id"])

    def test_schedulers_enqueue_each_tick_of_the_settings_schedules_once(self):
        # Two `manage.py cinejobs_scheduler` over the project's broker, with the example's
        # settings plus a one-second schedule of the built-in no-op task.
        command = [
            *(sys.executable, "manage.py", "cinejobs_scheduler", "--prune-every", "0"),
            *("--settings", "filmsite.settings_every_second"),
        ]
        logs = [PROJECT / f"scheduler-test-{i}.log" for i in range(2)]
        schedulers = []
        for log in logs:
            with log.open("wb") as out:
                schedulers.append(
                    subprocess.Popen(
                        command,
                        cwd=PROJECT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=dict(os.environ, PYTHONUNBUFFERED="1"),
                    )
                )
        try:
            for log in logs:
                wait_for(lambda log=log: " started: " in log.read_text(), what="a scheduler")
            # A few ticks, with both schedulers offering each one.
            wait_for(lambda: len(app.schedule_history("every-second")) >= 4, what="four ticks")
        finally:
            codes = [stop(s) for s in schedulers]
        self.assertEqual(codes, [0, 0], [log.read_text() for log in logs])
        for log in logs:
            # The settings' schedules run in each scheduler beside the test one.
            self.assertIn("films-cleanup-nightly, films-prune-weekly", log.read_text())

        history = sorted(app.schedule_history("every-second", limit=1000))
        ticks = [int(tick.timestamp() * 1000) for tick, _ in history]
        # Consecutive seconds, none missed and none twice.
        self.assertEqual(ticks, list(range(ticks[0], ticks[-1] + 1000, 1000)))
        jobs = [
            job
            for job in app.jobs(task="cinejobs.noop", limit=10000)
            if job["unique_key"].startswith("schedule:every-second:")
        ]
        self.assertEqual(sorted(job["run_at"] for job in jobs), ticks)
        self.assertEqual({job["id"] for job in jobs}, {job_id for _, job_id in history})
        # The example's worker runs them (it consumes the films queue).
        for _, job_id in history:
            self.assertEqual(app.get_job(job_id).wait(timeout=30), "succeeded")

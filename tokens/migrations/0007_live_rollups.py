"""The hourly rollups are written with the events (two of them, per observation and per host) instead of by the
pruning task from the events it deletes: the old rollups and the raw events kept are rolled up once here."""

from datetime import UTC, datetime

from django.db import migrations, models
from django.db.models import Count, Max, Min
from django.db.models.functions import Substr, TruncHour


def roll_up(apps, schema_editor):
    from tokens.events import rollup_key

    TokenEvent, EventHour = apps.get_model("tokens", "TokenEvent"), apps.get_model("tokens", "EventHour")
    ObservationHour, HostHour = apps.get_model("tokens", "ObservationHour"), apps.get_model("tokens", "HostHour")
    sqlite = schema_editor.connection.vendor == "sqlite"

    def hour(value):
        return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=UTC) if isinstance(value, str) else value

    per_observation, per_host = {}, {}
    for r in EventHour.objects.values("pool", "hour", "type", "group", "to_state", "exit_code", "hostname", "count"):
        key = (r["pool"], r["hour"], r["type"], r["group"], r["to_state"], r["exit_code"], "", False)
        per_observation[key] = per_observation.get(key, 0) + r["count"]
        key = (r["pool"], r["hour"], r["hostname"], r["to_state"], r["exit_code"], "", False)
        n, first, last = per_host.get(key, (0, r["hour"], r["hour"]))
        per_host[key] = (n + r["count"], first, last)
    rows = (TokenEvent.objects.annotate(hour=Substr("at", 1, 13) if sqlite else TruncHour("at"))
            .values("pool", "hour", "type", "group", "hostname", "to_state", "exit_code", "message", "origin")
            .annotate(n=Count("pk"), first=Min("at"), last=Max("at")).order_by())
    for r in rows.iterator(chunk_size=2000):
        at, backfilled = hour(r["hour"]), r["origin"] == "backfill"
        key = (r["pool"], at, r["type"], r["group"], r["to_state"], r["exit_code"], r["message"], backfilled)
        per_observation[key] = per_observation.get(key, 0) + r["n"]
        key = (r["pool"], at, r["hostname"], r["to_state"], r["exit_code"], r["message"], backfilled)
        n, first, last = per_host.get(key, (0, r["first"], r["last"]))
        per_host[key] = (n + r["n"], min(first, r["first"]), max(last, r["last"]))
    ObservationHour.objects.bulk_create(
        [ObservationHour(pool=pool, hour=at, key=rollup_key(*rest), type=rest[0], group=rest[1], to_state=rest[2],
                         exit_code=rest[3], message=rest[4], backfill=rest[5], count=n)
         for (pool, at, *rest), n in per_observation.items()], batch_size=2000)
    HostHour.objects.bulk_create(
        [HostHour(pool=pool, hour=at, key=rollup_key(*rest), hostname=rest[0], to_state=rest[1], exit_code=rest[2],
                  message=rest[3], backfill=rest[4], count=n, first=first, last=last)
         for (pool, at, *rest), (n, first, last) in per_host.items()], batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [("tokens", "0006_token_events")]

    operations = [
        migrations.CreateModel(
            name="ObservationHour",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pool", models.CharField(max_length=100)),
                ("hour", models.DateTimeField()),
                ("key", models.CharField(max_length=32)),
                ("type", models.CharField(max_length=200)),
                ("group", models.CharField(max_length=1000, null=True)),
                ("to_state", models.CharField(max_length=20)),
                ("exit_code", models.TextField(blank=True)),
                ("message", models.TextField(blank=True)),
                ("backfill", models.BooleanField(default=False)),
                ("count", models.PositiveIntegerField()),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("pool", "hour", "key"),
                                                             name="observation_hour_key")]},
        ),
        migrations.CreateModel(
            name="HostHour",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pool", models.CharField(max_length=100)),
                ("hour", models.DateTimeField()),
                ("key", models.CharField(max_length=32)),
                ("hostname", models.TextField(blank=True)),
                ("to_state", models.CharField(max_length=20)),
                ("exit_code", models.TextField(blank=True)),
                ("message", models.TextField(blank=True)),
                ("backfill", models.BooleanField(default=False)),
                ("count", models.PositiveIntegerField()),
                ("first", models.DateTimeField()),
                ("last", models.DateTimeField()),
            ],
            options={
                "indexes": [models.Index(fields=["pool", "exit_code", "message"], name="host_hour_failure")],
                "constraints": [models.UniqueConstraint(fields=("pool", "hour", "key"), name="host_hour_key")],
            },
        ),
        migrations.RunPython(roll_up, migrations.RunPython.noop),
        migrations.DeleteModel(name="EventHour"),
    ]

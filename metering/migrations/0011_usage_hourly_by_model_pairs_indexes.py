import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone


def mark_rolled_up_days_dirty(apps, schema_editor):
    """Days rolled up before this migration lack UsageHourlyBy rows and the (user, model) and
    (team, model) pairs of UsageDailyBy: mark them dirty, so they are read from the raw rows
    until rebuilt."""
    DirtyDay = apps.get_model("metering", "DirtyDay")
    days = set(apps.get_model("metering", "UsageDaily").objects.values_list("org_id", "day").distinct())
    marked = set(DirtyDay.objects.values_list("org_id", "day"))
    now = timezone.now()
    DirtyDay.objects.bulk_create(
        [DirtyDay(org_id=org, day=day, marked_at=now) for org, day in sorted(days - marked)], batch_size=1000
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_user_live_mode"),
        ("metering", "0010_conversation_counts_per_agent_pairs_activity_hours"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="activitydailyby",
            index=models.Index(fields=["org", "dimension", "kind", "day"], name="activitydailyby_org_dim_kind"),
        ),
        migrations.AddIndex(
            model_name="usagedailyby",
            index=models.Index(fields=["org", "dimension", "value", "day"], name="usagedailyby_org_dim_value"),
        ),
        migrations.CreateModel(
            name="UsageHourlyBy",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("requests", models.BigIntegerField()),
                ("failed_requests", models.BigIntegerField()),
                ("input_tokens", models.BigIntegerField()),
                ("cached_input_tokens", models.BigIntegerField()),
                ("cache_write_tokens", models.BigIntegerField()),
                ("output_tokens", models.BigIntegerField()),
                ("reasoning_tokens", models.BigIntegerField()),
                ("cost", models.DecimalField(decimal_places=10, max_digits=22)),
                ("session_cost", models.DecimalField(decimal_places=10, max_digits=22)),
                ("hour", models.DateTimeField()),
                ("dimension", models.CharField(max_length=40)),
                ("value", models.CharField(max_length=200, null=True)),
                ("other", models.CharField(max_length=200, null=True)),
                (
                    "org",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.organization",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["org", "dimension", "day", "hour"], name="usagehourlyby_org_dim_day")],
            },
        ),
        migrations.RunPython(mark_rolled_up_days_dirty, migrations.RunPython.noop),
    ]

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def mark_rolled_up_days_dirty(apps, schema_editor):
    """Days rolled up before this migration have no per-agent conversation counts, pairs in
    UsageDailyBy or ActivityHourlyOrg rows (and their org-wide and per-user conversation counts
    need their grain): mark them dirty, so they are read from the raw rows until rebuilt."""
    ConversationDayCount = apps.get_model("metering", "ConversationDayCount")
    ConversationDayCount.objects.filter(user__isnull=False).update(grain="user")
    DirtyDay = apps.get_model("metering", "DirtyDay")
    days = set()
    for name in ("UsageDaily", "ActivityDaily", "ConversationDayCount"):
        days |= set(apps.get_model("metering", name).objects.values_list("org_id", "day").distinct())
    marked = set(DirtyDay.objects.values_list("org_id", "day"))
    now = django.utils.timezone.now()
    DirtyDay.objects.bulk_create(
        [DirtyDay(org_id=org, day=day, marked_at=now) for org, day in sorted(days - marked)], batch_size=1000
    )


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0009_rollups_by_day_and_team"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversationdaycount",
            name="grain",
            field=models.CharField(
                choices=[("org", "org"), ("user", "user"), ("agent", "agent")], default="org", max_length=5
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="conversationdaycount",
            name="agent",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="metering.agent",
            ),
        ),
        migrations.AlterField(
            model_name="usagedailyby",
            name="dimension",
            field=models.CharField(max_length=40),
        ),
        migrations.AddField(
            model_name="usagedailyby",
            name="other",
            field=models.CharField(max_length=200, null=True),
        ),
        migrations.CreateModel(
            name='ActivityHourlyOrg',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('hour', models.DateTimeField()),
                ('kind', models.CharField(max_length=20)),
                ('events', models.BigIntegerField()),
                ('quantity', models.BigIntegerField()),
                ('org', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.organization')),
            ],
            options={
                'indexes': [models.Index(fields=['org', 'day', 'hour'], name='activityhourlyorg_org_day_hour')],
            },
        ),
        migrations.RunPython(mark_rolled_up_days_dirty, migrations.RunPython.noop),
    ]

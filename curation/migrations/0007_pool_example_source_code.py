from django.db import migrations, models

# The single `clamp` seed each task started with: a small generator copied it as its answer, so it is
# taken out of the pools (removed, not deleted: a curator can restore it) for the three varied seeds.
CLAMP_SEED_INPUTS = [
    "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))",
    "def clamp(x, lo, hi):\n    return min(lo, max(x, hi))",
]


def retire_clamp_seeds(apps, schema_editor):
    PoolExample = apps.get_model("curation", "PoolExample")
    seeds = PoolExample.objects.filter(origin="seed", pinned=True)
    seeds.filter(input__in=CLAMP_SEED_INPUTS).update(removed=True, pinned=False)
    seeds.filter(instruction__startswith="Write a Python function `clamp(x, lo, hi)`").update(
        removed=True, pinned=False
    )


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0006_job_worker"),
    ]

    operations = [
        migrations.AddField(
            model_name="poolexample",
            name="source_code",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(retire_clamp_seeds, migrations.RunPython.noop),
    ]

"""Pool passwords and webhook addresses were stored in clear: each is encrypted (tokens/secretbox.py, SECRETS_KEY)
into a new column, then the clear one is dropped."""

import django.core.validators
from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from tokens import secretbox

    for config in apps.get_model("tokens", "PoolConfig").objects.exclude(password=""):
        config.password_sealed = secretbox.seal(config.password)
        config.save(update_fields=["password_sealed"])
    for sub in apps.get_model("tokens", "Subscription").objects.exclude(webhook_url=""):
        sub.webhook_sealed = secretbox.seal(sub.webhook_url)
        sub.save(update_fields=["webhook_sealed"])
    for delivery in apps.get_model("tokens", "Delivery").objects.filter(channel="webhook"):
        delivery.target = secretbox.seal(delivery.target)
        delivery.save(update_fields=["target"])


class Migration(migrations.Migration):

    dependencies = [
        ('tokens', '0008_alerts'),
    ]

    operations = [
        migrations.AddField(
            model_name='poolconfig',
            name='password_env',
            field=models.CharField(blank=True, help_text='Read the password from this environment variable, or from the file named by its _FILE variable (e.g. LOFAR_COUCHDB_PASSWORD, LOFAR_COUCHDB_PASSWORD_FILE), instead of storing it.', max_length=100, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', "An environment variable's name: letters, digits and _")]),
        ),
        migrations.AddField(
            model_name='poolconfig',
            name='password_sealed',
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name='subscription',
            name='webhook_sealed',
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name='delivery',
            name='target',
            field=models.TextField(),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='poolconfig',
            name='password',
        ),
        migrations.RemoveField(
            model_name='subscription',
            name='webhook_url',
        ),
    ]

# Login throttling moved to django-axes, which keeps failures in its own table (axes.AccessAttempt).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("dashboard", "0003_pool_roles_and_token_limits"),
    ]

    operations = [
        migrations.DeleteModel(
            name="LoginFailure",
        ),
    ]

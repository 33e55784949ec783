"""Re-encrypt every stored secret with the first key of SECRETS_KEY, after a new key was put in front of the old:
`SECRETS_KEY=new,old manage.py rotate_secrets`, then the old key can be dropped."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tokens import secretbox
from tokens.models import Delivery, PoolConfig, Subscription


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        done = 0
        try:
            with transaction.atomic():
                for field, rows in (
                        ("password_sealed", PoolConfig.objects.exclude(password_sealed="")),
                        ("webhook_sealed", Subscription.objects.exclude(webhook_sealed="")),
                        ("target", Delivery.objects.filter(channel=Delivery.WEBHOOK))):
                    for row in rows:
                        setattr(row, field, secretbox.reseal(getattr(row, field)))
                        row.save(update_fields=[field])
                        done += 1
        except Exception as e:  # InvalidToken: a secret none of the keys opens; nothing was changed
            raise CommandError(f"A stored secret cannot be decrypted with any key in SECRETS_KEY; nothing was "
                               f"changed ({type(e).__name__})") from None
        self.stdout.write(f"{done} stored secret{'s' if done != 1 else ''} encrypted with the first key.")

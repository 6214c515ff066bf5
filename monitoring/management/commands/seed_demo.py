from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from monitoring.demo import DEMO_ADMIN, DEMO_CLINICIAN, seed_demo


class Command(BaseCommand):
    help = "Create demo users, patients and devices, and print their credentials (DEBUG only)."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo creates known demo accounts; it runs only with DEBUG on.")
        credentials = seed_demo()
        self.stdout.write(
            f"Demo login (clinician, sees 3 patients): "
            f"user {DEMO_CLINICIAN} password {credentials.passwords[DEMO_CLINICIAN]}"
        )
        self.stdout.write(
            f"Demo login (administrator, sees all):   "
            f"user {DEMO_ADMIN} password {credentials.passwords[DEMO_ADMIN]}"
        )
        for serial, token in credentials.device_tokens.items():
            self.stdout.write(f"Device {serial} token (shown once): {token}")

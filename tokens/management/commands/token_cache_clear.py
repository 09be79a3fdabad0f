from django.conf import settings
from django.core.management.base import BaseCommand

from tokens import authcache


class Command(BaseCommand):
    help = (
        "Make every server process reload the tokens it has cached: after a change made outside the service "
        "(an SQL edit), which no process hears of."
    )

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            self.stdout.write("Without REDIS_URL no process caches tokens: nothing to clear.")
        elif authcache.broadcast(authcache.ALL):
            self.stdout.write("Every listening process emptied its token cache.")
        else:
            self.stdout.write("Redis is out of reach: the clear is kept and relayed by beat within seconds.")

import os
import sys

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from django.conf import settings

        # Torch threads per process (TORCH_THREADS). Torch is not imported here: it takes a
        # second or two, and a process that never runs a model (manage.py commands, a web
        # server before its first analysis) need not pay it. OpenMP reads OMP_NUM_THREADS when
        # torch loads it; a torch already loaded (a test run, a shell) is set directly.
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(settings.TORCH_THREADS)
        else:
            os.environ["OMP_NUM_THREADS"] = str(settings.TORCH_THREADS)

        from monitoring.consumers import connect_revoke_signals

        connect_revoke_signals()  # open live sockets re-check access when it is taken away

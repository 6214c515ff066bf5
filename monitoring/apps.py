from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        import torch
        from django.conf import settings

        torch.set_num_threads(settings.TORCH_THREADS)

        from monitoring.consumers import connect_revoke_signals

        connect_revoke_signals()  # open live sockets re-check access when it is taken away

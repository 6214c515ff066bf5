from django.urls import path

from monitoring import consumers

websocket_urlpatterns = [
    path("ws/status/", consumers.StatusConsumer.as_asgi()),
    path("ws/patients/<int:patient_id>/", consumers.PatientLiveConsumer.as_asgi()),
    path("ws/station/", consumers.StationConsumer.as_asgi()),
]

"""Websocket consumers. Every consumer refuses anonymous users before accepting."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

# Close codes in the 4000-4999 range are ours to define (RFC 6455 section 7.4.2).
CLOSE_UNAUTHENTICATED = 4401


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only connections whose Django session belongs to a logged-in user.

    A frame that is not JSON gets an error message back instead of killing the connection.
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Closing before accept makes daphne refuse the handshake with HTTP 403.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self.accept()
        await self.on_authenticated_connect()

    async def on_authenticated_connect(self):
        pass

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self.send_json({"type": "error", "error": "expected a JSON text frame"})
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError as exc:
            await self.send_json({"type": "error", "error": f"malformed JSON: {exc}"})
            return
        await self.receive_json(content, **kwargs)


class StatusConsumer(AuthenticatedJsonConsumer):
    """``/ws/status/``: tells the browser who it is connected as and answers pings.

    Pages use it to show whether their live connection is up.
    """

    async def on_authenticated_connect(self):
        await self.send_json({"type": "hello", "user": self.scope["user"].get_username()})

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})
        else:
            await self.send_json({"type": "error", "error": 'expected {"type": "ping"}'})

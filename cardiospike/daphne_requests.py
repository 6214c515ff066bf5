"""daphne's requests leave POST bodies to Django: Twisted parsed every multipart body first.

Twisted's ``http.Request`` parses a POST's multipart/form-data or urlencoded body into
``request.args`` before daphne sees the request, on the reactor thread, with Python's
``email`` parser, line by line. daphne never reads ``args`` (it hands the raw body to the
application, and Django parses it again), but while Twisted parsed, the server's one event
loop did nothing else: a 60 MB signal CSV uploaded from the upload page (9 million lines)
held every device's chunk, websocket and ``/health`` for 3.2-3.6 s, and anyone could post
such a body to ``/login/`` without an account. Twisted's documented switch for it,
``Request(parsePOSTFormSubmission=False)``, is a constructor argument that daphne does not
pass, so daphne's request class gets it as its default here. Imported by
``cardiospike.asgi``, which daphne loads before it serves a request.
"""

from daphne.http_protocol import WebRequest

_daphne_init = WebRequest.__init__


def _init_without_form_parsing(self, *args, **kwargs):
    kwargs.setdefault("parsePOSTFormSubmission", False)
    _daphne_init(self, *args, **kwargs)


if not getattr(WebRequest, "parses_post_forms_itself", False):
    WebRequest.__init__ = _init_without_form_parsing
    WebRequest.parses_post_forms_itself = True  # once, however often this is imported

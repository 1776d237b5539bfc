"""Running the UI: the webhook's serving stack (``webhook.serve.TLSServer``: gunicorn, the event worker,
TLS from rotating files), with the UI's app in each worker.

The session key is made once, in the master, before the workers fork, so every worker reads every
worker's cookies; a restart signs everyone out (sign-in is one token away).
"""

from __future__ import annotations

import secrets
from typing import Any

from ui.settings import Settings
from webhook.serve import TLSServer, raise_file_limit
from webhook.tls import CertificateReloader


def serve(settings: Settings) -> None:
    key = settings.session_key_file.read_bytes().strip() if settings.session_key_file else secrets.token_bytes(32)

    def create(reloader: CertificateReloader) -> Any:
        from ui.app import create_app

        return create_app(settings, session_key=key)

    raise_file_limit(settings.workers * settings.max_connections + 256)
    TLSServer(settings, create, name="ui").run()

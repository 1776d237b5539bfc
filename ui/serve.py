"""Running the UI: the webhook's serving stack (``webhook.serve.TLSServer``: gunicorn, the event worker,
TLS from rotating files), with the UI's app in each worker.

The session key is made once, in the master, before the workers fork, so every worker reads every
worker's cookies; a restart signs everyone out (sign-in is one token away). Sync's token file is checked
once here too: a warning when it cannot be read (``ui.reads.sync_token_problem``), and the UI serves on.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from ui.reads import sync_token_problem
from ui.settings import Settings
from webhook.serve import TLSServer, raise_file_limit
from webhook.tls import CertificateReloader

log = logging.getLogger(__name__)


def serve(settings: Settings) -> None:
    problem = sync_token_problem(settings.reconciler_url, settings.reconciler_token_file)
    if problem:
        log.warning("%s", problem)
    key = settings.session_key_file.read_bytes().strip() if settings.session_key_file else secrets.token_bytes(32)

    def create(reloader: CertificateReloader) -> Any:
        from ui.app import create_app

        return create_app(settings, session_key=key)

    raise_file_limit(settings.workers * settings.max_connections + 256)
    TLSServer(settings, create, name="ui").run()

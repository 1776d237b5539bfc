"""``python -m driftguard.install``: print manifests/webhook-configurations.yaml (``make manifests``)."""

from driftguard.install.base import render_webhook_configurations

print(render_webhook_configurations(), end="")

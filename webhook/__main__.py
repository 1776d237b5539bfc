"""``python -m webhook ...``: the webhook's subcommands without the ``driftguard`` console script."""

from webhook.cli import main

raise SystemExit(main())

"""``python -m driftguard.local.controlplane``: find or build the control-plane binaries and print their paths."""

from driftguard.local.controlplane.binaries import main

raise SystemExit(main())

"""``python -m driftguard.controlplane``: find or build the control-plane binaries and print their paths."""

from driftguard.controlplane.binaries import main

raise SystemExit(main())

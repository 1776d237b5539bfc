"""driftguard: all changes via git, enforced at the Kubernetes API server."""

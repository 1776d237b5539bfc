"""Local mode: driftguard on this machine with no cluster — the top layer under the CLI.

``controlplane`` builds and runs a real etcd + kube-apiserver from the Kubernetes Go modules,
``stack`` starts the webhook and the reconciler against it, ``commands`` is ``driftguard local
up|down|demo`` and ``demo`` walks the user's story. Nothing below this layer imports it.
"""

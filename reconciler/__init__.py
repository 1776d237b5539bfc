"""driftguard's reconciler: keep a cluster equal to what git declares, and say what it did.

Pipeline per Application (``reconcile.py``): load inventory → resolve revision (``gitsource``) →
render (``render``) → plan and apply in order (``plan``, ``apply``) → new inventory → prune stale in
reverse → save status (``status``). ``selfheal`` watches the kinds it manages and puts git's value
back within a second; ``controller`` schedules the cycles, serves ``/refresh`` and metrics, and
``leader`` makes sure two replicas never fight.
"""

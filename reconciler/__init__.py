"""driftguard's reconciler: keep a cluster equal to what git declares, and say what it did.

Pipeline per Application (``reconcile.py``): load inventory → resolve revision (``gitsource``) →
render (``render``) → plan and apply in order (``plan``, ``apply``) → new inventory → prune stale in
reverse → save status (``status``). ``selfheal`` watches the kinds it manages and puts git's value
back within a second; ``controller`` is the machinery that runs the cycles (``cycle`` decides no-op or
full sync and when the next one is due, ``record`` folds results into each Application's record and
returns the Events, ``reporting`` writes status, inventory and Events, ``cascade`` runs cascading
deletes), ``server`` answers ``/refresh`` and metrics, ``leader`` makes sure two replicas never fight,
and ``settings`` declares every setting once.
"""

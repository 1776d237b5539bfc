"""driftguard's web UI: another way to look, never another way around git.

``ui.views`` (pure) turns Applications, objects and audit records into rows and trees; ``ui.access``
(pure) holds who the user is and the SubjectAccessReview bodies; ``ui.reads`` reads the cluster
through ``driftguard.kube`` as the UI's own read-only ServiceAccount and filters every read by what
the user may ``get``; ``ui.app`` is the Flask app (login, CSRF, pages, the Refresh action);
``ui.serve`` runs it on the webhook's serving stack (gunicorn, the event worker, TLS from rotating files).
"""

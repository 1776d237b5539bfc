"""driftguard's admission webhook: deny (or flag) out-of-band edits of git-managed objects.

Layers, higher importing lower only:

* ``app`` (Flask) and ``serve`` (gunicorn, TLS) — the HTTP edge; ``kubeio`` — the only module that
  talks to the API server (the scale parent read and audit Events), through ``driftguard.kube``;
* ``audit`` — recording sinks (log, JSONL file, aggregated Events, metrics), never on the decision path;
* ``policy`` and ``messages`` — the pure decision: AdmissionReview request in, ``Verdict`` out;
* ``reviews`` (wire types and response constructors), ``records`` (the audit record), ``settings``.
"""

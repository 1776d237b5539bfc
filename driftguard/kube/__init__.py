"""The only package that imports the ``kubernetes`` client library (an import contract enforces it).

Everything else in driftguard talks to the API server through these adapters, in plain JSON.
"""

from driftguard.kube.session import Kube, KubeError, Response, parse_status, parse_warnings

__all__ = ["Kube", "KubeError", "Response", "parse_status", "parse_warnings"]

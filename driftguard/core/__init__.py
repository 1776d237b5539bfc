"""driftguard's pure core: the contract the reconciler writes and the webhook reads.

Nothing in this package performs I/O or imports a client library (an import-linter
contract enforces it). Both components meet here and nowhere else, so the rules for
"which fields did git declare" and "does this object still match git" exist once.
"""

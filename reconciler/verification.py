"""Verifying a resolved revision's signatures before anything of it is rendered, applied or pruned.

The policy (``driftguard.core.signatures.policy``) comes from the Application's and its Project's ``spec.verify``;
the keys from the Secret it names (one GET per full sync); the signed objects from the git cache
(``GitSource.raw_commit`` / ``tag_object``); the verdicts from ``reconciler.signing.Verifier`` (cached per object
and keys). The rendered source and each ``ref`` source of ``spec.sources`` are held to the same mode. A refusal is a
``Problem`` of the ``SourceVerified`` condition naming the commit or tag, the signer if any, and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final

from driftguard.core import signatures
from driftguard.core.projects import Project
from driftguard.core.signatures import Keyring, Outcome, Policy, VerifyError
from driftguard.kube.resources import Cluster, ResourceError
from reconciler.application import AppSpec, SourceSpec
from reconciler.gitsource import Credentials, GitSource, SourceError
from reconciler.revision import Revision
from reconciler.signing import ToolMissing, Verifier
from reconciler.status import Problem

CONDITION: Final = "SourceVerified"


class Refused(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _refuse(reason: str, message: str) -> Refused:
    return Refused(Problem(CONDITION, reason, message))


class SourceVerification:
    def __init__(self, cluster: Cluster, source: GitSource, verifier: Verifier | None = None) -> None:
        self.cluster, self.source = cluster, source
        self.verifier = verifier or Verifier()

    def policy(self, app: AppSpec, project: Project, project_namespace: str) -> Policy | None:
        return signatures.policy(app.verify, project.verify, app_namespace=app.key.namespace,
                                 project_name=project.name, project_namespace=project_namespace)

    def check(self, app: AppSpec, policy: Policy, revision: Revision,
              credentials_of: Callable[[SourceSpec | None], Credentials | None]) -> Revision:
        """``revision`` with ``verified_by`` set, when every source's signatures satisfy ``policy``; ``Refused``
        with the problem otherwise."""
        for name, source in (("spec.source", app.source), *app.extra_sources):
            if source.render.chart:
                raise _refuse("SignatureUnsupported", (
                    f"{name} is a chart ({source.render.chart}) and verify mode {policy.described} checks git "
                    "commit and tag signatures only; verify the chart another way, or render it from a git "
                    "repository; nothing applied or pruned"))
        keys = self._keys(policy)
        refs = dict(revision.refs)
        signer = self._source(app.source, revision.sha, revision, policy, keys=keys, credentials=credentials_of(None))
        for name, ref in (*app.refs, *app.extra_sources):
            self._source(ref, refs[name], None, policy, keys=keys, credentials=credentials_of(ref),
                         what=f"source {name!r}: ")
        return dataclasses.replace(revision, verified_by=signer)

    def _keys(self, policy: Policy) -> Keyring:
        where = f"Secret {policy.secret_namespace}/{policy.secret} ({policy.by}'s spec.verify.keys.secretRef)"
        try:
            secret = self.cluster.get(self.cluster.discovery.resolve("v1", "Secret"), policy.secret_namespace,
                                      policy.secret)
        except ResourceError as e:
            raise _refuse("VerificationKeysUnreadable",
                          f"{where} could not be read: {e}; nothing applied or pruned") from e
        if secret is None:
            raise _refuse("VerificationKeysNotFound", (
                f"{where} not found: create it with the trusted public keys (*.asc / *.gpg, *.pub or allowed_signers); "
                "nothing applied or pruned"))
        try:
            return signatures.keyring(secret.get("data") or {}, secret=f"{policy.secret_namespace}/{policy.secret}")
        except VerifyError as e:
            raise _refuse("VerificationKeysInvalid",
                          f"{e} ({policy.by}'s spec.verify); nothing applied or pruned") from e

    def _source(self, spec: SourceSpec, sha: str, revision: Revision | None, policy: Policy, *, keys: Keyring,
                credentials: Credentials | None, what: str = "") -> str:
        """The signer of ``spec`` at commit ``sha`` (``Refused`` when its signatures do not satisfy ``policy``)."""
        signers: list[tuple[str, Outcome]] = []
        target = spec.target_revision
        try:
            if policy.tag:
                tag = self.source.tag_object(spec.repo_url, target, credentials=credentials)
                if tag.kind == "none":
                    raise _refuse("TagRequired", (
                        f"{what}targetRevision {target!r} is not a tag, and verify mode {policy.described} requires a "
                        "signed annotated tag: point targetRevision at one (git tag -s v1.2.3 && git push --tags); "
                        "nothing applied or pruned"))
                if tag.kind == "lightweight":
                    raise _refuse("TagRequired", (
                        f"{what}tag {target} is a lightweight tag, which carries no signature; verify mode "
                        f"{policy.described} requires a signed annotated tag: git tag -s -f {target} {sha[:7]} && git "
                        "push -f origin tag " + f"{target}; nothing applied or pruned"))
                signed = signatures.split_tag(tag.raw)
                if signed.target_type != "commit" or signed.target != sha:
                    raise _refuse("TagRequired", (
                        f"{what}tag {target} points at {signed.target_type} {signed.target[:7]}, not at the resolved "
                        f"commit {sha[:7]}; nothing applied or pruned"))
                outcome = self.verifier.verify(tag.id, signed, keys)
                if not outcome.ok:
                    raise _refuse(outcome.reason, signatures.refusal(
                        outcome, what=f"{what}tag {target} ({tag.id[:7]}, on commit {sha[:7]})", policy_=policy))
                signers.append((f"tag {target}", outcome))
            if policy.head:
                signed = signatures.split_commit(self.source.raw_commit(spec.repo_url, sha, credentials=credentials))
                outcome = self.verifier.verify(sha, signed, keys)
                if not outcome.ok:
                    who = f" by {revision.author}" if revision is not None and revision.author else ""
                    raise _refuse(outcome.reason, signatures.refusal(
                        outcome, what=f"{what}commit {sha[:7]}{who}", policy_=policy))
                signers.append(("commit", outcome))
        except SourceError as e:
            raise _refuse("VerificationFailed", f"{what}{e}; nothing applied or pruned") from e
        except ToolMissing as e:
            raise _refuse("VerificationFailed", f"{e}; nothing applied or pruned") from e
        return signatures.verified_by(*signers)

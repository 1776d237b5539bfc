"""Verified commit signatures (spec.verify): the real API server, real git repositories, commits and tags signed by a
real OpenPGP key (gpg) and a real SSH key (ssh-keygen), verified by the reconciler with the real gpg and ssh-keygen.

Trusted → applied, its signer named in the stamp, status.sync.verifiedBy, the history and the Synced Event;
unsigned or signed by a key not in the Secret → refused with SourceVerified False naming the commit and the signer,
the previously applied revision left as it is, nothing pruned; Tag mode from a Project: a lightweight tag refused, a
signed annotated tag applied.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.reconciler_harness import Harness, Repo, configmap, wait_for
from support.signing_keys import GpgKey, git, gpg_key, require_tools, secret_data, signed_commit, ssh_key

from driftguard.kube import Kube

pytestmark = pytest.mark.integration
VERIFIED_BY = "driftguard.io/verified-by"


@pytest.fixture(scope="module")
def gpg_keys() -> Iterator[tuple[GpgKey, GpgKey]]:
    require_tools()
    alice, mallory = gpg_key("Alice <alice@org>"), gpg_key("Mallory <mallory@org>")
    yield alice, mallory
    alice.close()
    mallory.close()


def key_secret(admin: Kube, namespace: str, name: str, keys: dict[str, bytes | str]) -> None:
    admin.request("POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
        "data": secret_data(keys)})


def assert_left_as(harness: Harness, sha: str) -> None:
    alpha, beta = harness.cm("alpha"), harness.cm("beta")
    assert alpha is not None and beta is not None, "nothing may be pruned"
    assert alpha["data"] == {"v": "1"}, "nothing of the refused revision may be applied"
    assert alpha["metadata"]["annotations"]["driftguard.io/commit"] == sha


def events(harness: Harness, reason: str) -> list[str]:
    items = harness.admin.request("GET", f"/api/v1/namespaces/{harness.namespace}/events")["items"]
    return [e["message"] for e in items
            if e.get("reason") == reason and e["involvedObject"].get("kind") == "Application"]


def test_openpgp_signed_commits(harness: Harness, repo: Repo, admin: Kube, gpg_keys: tuple[GpgKey, GpgKey]) -> None:
    alice, mallory = gpg_keys
    key_secret(admin, harness.namespace, "trusted-keys", {"alice.asc": alice.public()})
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    repo.write("app/b.yaml", configmap("beta", {"v": "1"}))
    good = signed_commit(repo.path, "signed by alice", alice)
    harness.make_app("svc", repo, verify={"mode": "HEAD", "keys": {"secretRef": {"name": "trusted-keys"}}})
    harness.start()
    status = harness.wait_synced("svc", good)
    signer = f"Alice <alice@org> (OpenPGP {alice.fingerprint})"
    assert status["sync"]["verifiedBy"] == signer
    assert status["history"][-1]["verifiedBy"] == signer
    verified = harness.condition("svc", "SourceVerified")
    assert verified["status"] == "True" and signer in verified["message"] and "HEAD" in verified["message"]
    assert harness.cm("alpha")["metadata"]["annotations"][VERIFIED_BY] == signer  # type: ignore[index]
    wait_for(lambda: [m for m in events(harness, "Synced") if signer in m] or None, what="a Synced Event naming Alice")

    # signed, but by a key the Secret does not hold: refused, nothing applied or pruned
    repo.write("app/a.yaml", configmap("alpha", {"v": "2"}))
    repo.remove("app/b.yaml")
    bad = signed_commit(repo.path, "signed by mallory", mallory)
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "SourceVerified", "False", "SignerUntrusted")
    assert f"commit {bad[:7]} by alice@org is signed by a key that is not trusted" in condition["message"]
    assert mallory.fingerprint in condition["message"] and "nothing applied or pruned" in condition["message"]
    assert harness.condition("svc", "Ready")["reason"] == "SignerUntrusted"
    assert harness.status("svc")["sync"]["status"] == "Error"
    assert_left_as(harness, good)

    # a later unsigned commit: refused too; the signed revision stays applied
    unsigned = signed_commit(repo.path, "unsigned", None)
    harness.refresh("svc")
    condition = wait_for(lambda: (c := harness.condition("svc", "SourceVerified")).get("reason") == "SignatureMissing"
                         and unsigned[:7] in c["message"] and c, what="SourceVerified SignatureMissing")
    assert f"commit {unsigned[:7]} by alice@org is not signed" in condition["message"]
    assert "git commit -S" in condition["message"]
    assert_left_as(harness, good)

    # signed again by the trusted key: applied, and now pruned
    fixed = signed_commit(repo.path, "signed by alice again", alice)
    harness.refresh("svc")
    harness.wait_synced("svc", fixed)
    assert harness.cm("alpha")["data"] == {"v": "2"} and harness.cm("beta") is None  # type: ignore[index]


def test_ssh_signed_commits(harness: Harness, repo: Repo, admin: Kube, tmp_path: Path) -> None:
    require_tools()
    bob, eve = ssh_key(tmp_path, "bob", "bob@org"), ssh_key(tmp_path, "eve", "eve@org")
    key_secret(admin, harness.namespace, "ssh-keys", {"bob.pub": bob.public()})
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    repo.write("app/b.yaml", configmap("beta", {"v": "1"}))
    good = signed_commit(repo.path, "signed by bob", bob)
    harness.make_app("svc", repo, verify={"keys": {"secretRef": {"name": "ssh-keys"}}})
    harness.start()
    status = harness.wait_synced("svc", good)
    assert status["sync"]["verifiedBy"] == f"bob@org (SSH {bob.fingerprint()})"

    repo.write("app/a.yaml", configmap("alpha", {"v": "2"}))
    repo.remove("app/b.yaml")
    bad = signed_commit(repo.path, "signed by eve", eve)
    harness.refresh("svc")
    condition = harness.wait_condition("svc", "SourceVerified", "False", "SignerUntrusted")
    assert bad[:7] in condition["message"] and eve.fingerprint() in condition["message"]
    assert_left_as(harness, good)


def test_tag_mode_from_a_project(harness: Harness, repo: Repo, admin: Kube, tmp_path: Path) -> None:
    """A Project's verify binds its Applications: Tag mode refuses a lightweight tag and a branch, applies a signed
    annotated tag; the Application's own HEAD makes it TagAndHEAD, and cannot bring keys of its own."""
    require_tools()
    bob = ssh_key(tmp_path, "bob", "bob@org")
    key_secret(admin, harness.namespace, "release-keys", {"allowed_signers": f"release@org {bob.public()}"})
    admin.request("POST", f"/apis/driftguard.io/v1alpha1/namespaces/{harness.namespace}/projects", body={
        "apiVersion": "driftguard.io/v1alpha1", "kind": "Project",
        "metadata": {"name": "signed", "namespace": harness.namespace},
        "spec": {"sourceRepos": ["*"], "destinations": [{"namespace": harness.namespace}],
                 "verify": {"mode": "Tag", "keys": {"secretRef": {"name": "release-keys"}}}}})
    repo.write("app/a.yaml", configmap("alpha", {"v": "1"}))
    first = signed_commit(repo.path, "v1 content", None)
    git(repo.path, "tag", "v1")  # lightweight
    harness.make_app("svc", repo, project="signed", source={"targetRevision": "v1"})
    harness.start()
    condition = harness.wait_condition("svc", "SourceVerified", "False", "TagRequired")
    assert "tag v1 is a lightweight tag" in condition["message"] and "git tag -s" in condition["message"]
    assert harness.cm("alpha") is None

    git(repo.path, "tag", "-s", "-m", "release 1", "v1.0.0", key=bob)
    harness.patch_app("svc", {"spec": {"source": {"targetRevision": "v1.0.0"}}})
    status = harness.wait_synced("svc", first)
    assert status["sync"]["verifiedBy"] == f"release@org (SSH {bob.fingerprint()})"
    assert "Project signed" in harness.condition("svc", "SourceVerified")["message"]

    # the Application asks for HEAD too (its own keys are not used): the unsigned commit under the tag is refused
    harness.patch_app("svc", {"spec": {"verify": {"mode": "HEAD", "keys": {"secretRef": {"name": "nobody"}}}}})
    condition = harness.wait_condition("svc", "SourceVerified", "False", "SignatureMissing")
    assert f"commit {first[:7]}" in condition["message"] and "TagAndHEAD" in condition["message"]
    assert "release-keys" in condition["message"]

    harness.patch_app("svc", {"spec": {"verify": None, "source": {"targetRevision": "main"}}})
    condition = harness.wait_condition("svc", "SourceVerified", "False", "TagRequired")
    assert "targetRevision 'main' is not a tag" in condition["message"]
    assert harness.cm("alpha")["data"] == {"v": "1"}  # type: ignore[index]

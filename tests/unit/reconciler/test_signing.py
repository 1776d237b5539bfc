"""The signature adapter against the real gpg and ssh-keygen, with commits and tags real git signed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.signing_keys import GpgKey, SshKey, git, gpg_key, require_tools, secret_data, signed_commit, ssh_key

from driftguard.core.signatures import Keyring, keyring, split_commit, split_tag
from reconciler.signing import ToolMissing, Verifier


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GpgKey | SshKey]]:
    require_tools()
    directory = tmp_path_factory.mktemp("ssh")
    alice, mallory = gpg_key("Alice <alice@org>"), gpg_key("Mallory <mallory@org>")
    yield {"alice": alice, "mallory": mallory, "bob": ssh_key(directory, "bob", "bob@org"),
           "eve": ssh_key(directory, "eve", "eve@org")}
    alice.close()
    mallory.close()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def trusted(keys: dict[str, GpgKey | SshKey]) -> Keyring:
    alice, bob = keys["alice"], keys["bob"]
    assert isinstance(alice, GpgKey) and isinstance(bob, SshKey)
    return keyring(secret_data({"alice.asc": alice.public(), "bob.pub": bob.public()}), secret="ns/keys")


def raw(repo: Path, kind: str, name: str) -> bytes:
    return subprocess.run(["git", "cat-file", kind, name], cwd=repo, check=True, capture_output=True).stdout


def commit(repo: Path, key: GpgKey | SshKey | None, text: str = "x") -> tuple[str, bytes]:
    (repo / "f").write_text(text)
    sha = signed_commit(repo, text, key)
    return sha, raw(repo, "commit", sha)


def test_openpgp_signatures(keys: dict[str, GpgKey | SshKey], repo: Path) -> None:
    verifier, ring = Verifier(), trusted(keys)
    alice = keys["alice"]
    assert isinstance(alice, GpgKey)
    sha, body = commit(repo, alice)
    good = verifier.verify(sha, split_commit(body), ring)
    assert good.ok and good.fingerprint == alice.fingerprint and good.identity == "Alice <alice@org>"
    sha, body = commit(repo, keys["mallory"], "y")
    untrusted = verifier.verify(sha, split_commit(body), ring)
    assert (untrusted.ok, untrusted.reason) == (False, "SignerUntrusted")
    assert untrusted.fingerprint == keys["mallory"].fingerprint  # type: ignore[union-attr]
    forged = split_commit(body.replace(b"\n\ny", b"\n\nz"))  # mallory's signature, alice's key would not help
    sha, body = commit(repo, alice, "w")
    tampered = split_commit(body)
    tampered = type(tampered)(tampered.payload.replace(b"\n\nw", b"\n\nv"), tampered.signature)
    assert verifier.verify("tampered", tampered, ring).reason == "SignatureInvalid"
    assert verifier.verify("forged", forged, ring).reason == "SignerUntrusted"
    sha, body = commit(repo, None, "u")
    assert verifier.verify(sha, split_commit(body), ring).reason == "SignatureMissing"


def test_ssh_signatures_and_tags(keys: dict[str, GpgKey | SshKey], repo: Path) -> None:
    verifier, ring = Verifier(), trusted(keys)
    bob, eve = keys["bob"], keys["eve"]
    assert isinstance(bob, SshKey) and isinstance(eve, SshKey)
    sha, body = commit(repo, bob)
    good = verifier.verify(sha, split_commit(body), ring)
    assert good.ok and good.identity == "bob@org" and good.fingerprint == bob.fingerprint()
    sha, body = commit(repo, eve, "y")
    untrusted = verifier.verify(sha, split_commit(body), ring)
    assert (untrusted.ok, untrusted.reason, untrusted.fingerprint) == (False, "SignerUntrusted", eve.fingerprint())
    git(repo, "tag", "-s", "-m", "release", "v1", key=bob)
    tag = split_tag(raw(repo, "tag", "v1"))
    assert tag.target == sha and verifier.verify("tag-v1", tag, ring).ok
    git(repo, "tag", "-a", "-m", "release", "v2")
    assert verifier.verify("tag-v2", split_tag(raw(repo, "tag", "v2")), ring).reason == "SignatureMissing"


def test_verdicts_are_cached_per_object_and_keys(keys: dict[str, GpgKey | SshKey], repo: Path) -> None:
    verifier, ring = Verifier(), trusted(keys)
    sha, body = commit(repo, keys["alice"])
    for _ in range(3):
        assert verifier.verify(sha, split_commit(body), ring).ok
    assert verifier.runs == 1
    only_bob = keyring(secret_data({"bob.pub": keys["bob"].public()}), secret="ns/keys")  # type: ignore[union-attr]
    assert verifier.verify(sha, split_commit(body), only_bob).reason == "SignerUntrusted"  # other keys: asked again
    assert verifier.runs == 2


def test_a_missing_tool_says_what_to_install(keys: dict[str, GpgKey | SshKey], repo: Path) -> None:
    sha, body = commit(repo, keys["alice"])
    with pytest.raises(ToolMissing, match="gnupg"):
        Verifier(gpg="/nonexistent/gpg").verify(sha, split_commit(body), trusted(keys))

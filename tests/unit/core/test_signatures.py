"""Signatures, decided: the verify policy, the key Secret, git's signed objects and what gpg and ssh-keygen said."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from driftguard.core import signatures
from driftguard.core.contract import Source, read_stamp, stamp
from driftguard.core.projects import ProjectError, parse_project
from driftguard.core.signatures import (
    Outcome,
    Policy,
    VerifyError,
    VerifySpec,
    interpret_gpg,
    interpret_ssh,
    keyring,
    parse_verify,
    policy,
    refusal,
    split_commit,
    split_tag,
    stricter,
    verified_by,
)

FPR = "469AE5FEB6B9CD10B9990AF7F75E71239C4DAC7C"
ED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxu2GfM/ThQ/71ayEK+z8jpk6OWl1EKaLrbcTLy65FB"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.mark.parametrize(("value", "expected"), [
    (None, None),
    ({"keys": {"secretRef": {"name": "k"}}}, VerifySpec("HEAD", "k")),
    ({"mode": "Tag", "keys": {"secretRef": {"name": " k "}}}, VerifySpec("Tag", "k")),
    ({"mode": "TagAndHEAD", "keys": {"secretRef": {"name": "k"}}}, VerifySpec("TagAndHEAD", "k")),
])
def test_parse_verify(value: Any, expected: VerifySpec | None) -> None:
    assert parse_verify(value, "spec.verify") == expected


@pytest.mark.parametrize(("value", "words"), [
    ("HEAD", "must be an object"),
    ({"mode": "head", "keys": {"secretRef": {"name": "k"}}}, "spec.verify.mode 'head' must be one of HEAD, Tag"),
    ({"mode": "HEAD"}, "spec.verify.keys.secretRef.name is required"),
    ({"keys": {"secretRef": {"name": ""}}}, "spec.verify.keys.secretRef.name is required"),
    ({"keys": "k"}, "spec.verify.keys.secretRef.name is required"),
])
def test_parse_verify_errors_name_the_field(value: Any, words: str) -> None:
    with pytest.raises(VerifyError, match=words.replace(".", r"\.")):
        parse_verify(value, "spec.verify")


def test_a_project_verify_is_parsed_and_a_bad_one_names_the_project() -> None:
    project = parse_project({"metadata": {"name": "p"}, "spec": {"verify": {"keys": {"secretRef": {"name": "k"}}}}})
    assert project.verify == VerifySpec("HEAD", "k")
    with pytest.raises(ProjectError, match=r"Project p: spec\.verify\.mode"):
        parse_project({"metadata": {"name": "p"}, "spec": {"verify": {"mode": "x", "keys": {}}}})


@pytest.mark.parametrize(("a", "b", "mode"), [
    ("HEAD", "HEAD", "HEAD"), ("HEAD", "Tag", "TagAndHEAD"), ("Tag", "Tag", "Tag"),
    ("Tag", "TagAndHEAD", "TagAndHEAD"), ("TagAndHEAD", "HEAD", "TagAndHEAD"),
])
def test_stricter(a: str, b: str, mode: str) -> None:
    assert stricter(a, b) == mode  # type: ignore[arg-type]
    assert stricter(b, a) == mode  # type: ignore[arg-type]


@pytest.mark.parametrize(("app", "project", "expected"), [
    (None, None, None),
    (VerifySpec("HEAD", "mine"), None, Policy("HEAD", "team", "mine", "Application")),
    (None, VerifySpec("Tag", "theirs"), Policy("Tag", "projects", "theirs", "Project p")),
    # the Application may add to the Project's mode, never weaken it, and its keys are not used
    (VerifySpec("HEAD", "mine"), VerifySpec("Tag", "theirs"), Policy("TagAndHEAD", "projects", "theirs", "Project p")),
    (VerifySpec("HEAD", "mine"), VerifySpec("TagAndHEAD", "theirs"),
     Policy("TagAndHEAD", "projects", "theirs", "Project p")),
])
def test_policy(app: VerifySpec | None, project: VerifySpec | None, expected: Policy | None) -> None:
    assert policy(app, project, app_namespace="team", project_name="p", project_namespace="projects") == expected


def test_keyring_reads_openpgp_and_ssh_keys_only() -> None:
    armored = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEaxFJ\n-----END PGP PUBLIC KEY BLOCK-----\n"
    keys = keyring({"alice.asc": b64(armored), "bob.pub": b64(ED + " bob@org\n"), "carol.gpg": b64(b"\x99\x01"),
                    "allowed_signers": b64(f"# team\ndave@org {ED}\n"), "README": b64("not a key")}, secret="ns/k")
    assert [name for name, _ in keys.openpgp] == ["alice.asc", "carol.gpg"]
    assert keys.ssh == (f"dave@org {ED}", f'bob@org namespaces="git" {ED}')
    assert keys.allowed_signers().endswith("\n") and keys.digest
    no_comment = keyring({"deploy.pub": b64(ED)}, secret="ns/k")
    assert no_comment.ssh == (f'deploy namespaces="git" {ED}',)
    assert keyring({"deploy.pub": b64(ED + " x")}, secret="ns/k").digest != no_comment.digest


@pytest.mark.parametrize(("data", "words"), [
    ({}, "Secret ns/k holds no public keys"),
    ({"README": b64("x")}, "Secret ns/k holds no public keys"),
    ({"a.asc": "!!"}, "Secret ns/k key a.asc is not base64"),
    ({"a.asc": b64("-----BEGIN PGP PRIVATE KEY BLOCK-----")}, "holds a private key"),
    ({"a.asc": b64("  ")}, "key a.asc is empty"),
    ({"a.pub": b64("hello world")}, "key a.pub: 'hello world' is not an SSH public key"),
    ({"allowed_signers": b64(ED)}, "is not an allowed-signers line"),
])
def test_keyring_errors_name_the_secret_and_key(data: dict[str, str], words: str) -> None:
    with pytest.raises(VerifyError, match=words):
        keyring(data, secret="ns/k")


SIGNED_COMMIT = (b"tree 4d59\nparent 9805\nauthor A <a@org> 1 +0000\ncommitter A <a@org> 1 +0000\n"
                 b"gpgsig -----BEGIN PGP SIGNATURE-----\n \n iHUEABYIAB0\n =G4LN\n -----END PGP SIGNATURE-----\n"
                 b"\none\n\nbody\n")


def test_split_commit() -> None:
    signed = split_commit(SIGNED_COMMIT)
    assert signed.payload == (b"tree 4d59\nparent 9805\nauthor A <a@org> 1 +0000\ncommitter A <a@org> 1 +0000\n"
                              b"\none\n\nbody\n")
    assert signed.signature == b"-----BEGIN PGP SIGNATURE-----\n\niHUEABYIAB0\n=G4LN\n-----END PGP SIGNATURE-----\n"
    assert signed.kind == "openpgp"
    unsigned = split_commit(b"tree 1\nauthor A <a@org> 1 +0000\n\nmsg\n")
    assert unsigned.signature == b"" and unsigned.payload == b"tree 1\nauthor A <a@org> 1 +0000\n\nmsg\n"
    assert unsigned.kind == ""
    # a message that merely quotes a signature header is not a signature
    quoted = split_commit(b"tree 1\n\ngpgsig -----BEGIN PGP SIGNATURE-----\n")
    assert quoted.signature == b""


def test_split_tag() -> None:
    raw = (b"object 513b568aafbb30b5caee3b88f62969c69c0df950\ntype commit\ntag v1\ntagger B <b@org> 1 +0000\n\nrel\n"
           b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n")
    signed = split_tag(raw)
    assert signed.payload.endswith(b"\n\nrel\n") and signed.signature.startswith(b"-----BEGIN SSH SIGNATURE-----")
    assert (signed.kind, signed.target, signed.target_type, signed.name) == (
        "ssh", "513b568aafbb30b5caee3b88f62969c69c0df950", "commit", "v1")
    plain = split_tag(b"object abc\ntype commit\ntag v1\ntagger B <b@org> 1 +0000\n\nrel\n")
    assert plain.signature == b"" and plain.payload.endswith(b"rel\n")


GOOD = f"""[GNUPG:] NEWSIG
[GNUPG:] KEY_CONSIDERED {FPR} 0
[GNUPG:] SIG_ID jen4Z 2026-12-03 1796295128
[GNUPG:] GOODSIG F75E71239C4DAC7C Alice <alice@org>
[GNUPG:] VALIDSIG {FPR} 2026-12-03 1796295128 0 4 0 22 8 00 {FPR}
"""


@pytest.mark.parametrize(("status", "rc", "expected"), [
    (GOOD, 0, Outcome(True, "Verified", FPR, "Alice <alice@org>")),
    (GOOD, 2, Outcome(False, "VerificationFailed")),
    (f"[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG F75E71239C4DAC7C 22 8 00 1796295128 9 {FPR}\n"
     "[GNUPG:] NO_PUBKEY F75E71239C4DAC7C\n", 2, Outcome(False, "SignerUntrusted", FPR)),
    ("[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG F75E71239C4DAC7C 22 8 00 1796295128 9 -\n"
     "[GNUPG:] NO_PUBKEY F75E71239C4DAC7C\n", 2, Outcome(False, "SignerUntrusted", "F75E71239C4DAC7C")),
    ("[GNUPG:] NEWSIG\n[GNUPG:] ERRSIG F75E71239C4DAC7C 99 8 00 1796295128 4 -\n", 2,
     Outcome(False, "VerificationFailed", "F75E71239C4DAC7C")),
    ("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG F75E71239C4DAC7C Alice <alice@org>\n", 1,
     Outcome(False, "SignatureInvalid", "F75E71239C4DAC7C", "Alice <alice@org>")),
    (f"[GNUPG:] NEWSIG\n[GNUPG:] EXPKEYSIG F75E71239C4DAC7C Alice <alice@org>\n"
     f"[GNUPG:] VALIDSIG {FPR} 2026-12-03 1 0 4 0 22 8 00 {FPR}\n", 0,
     Outcome(False, "SignatureKeyExpired", FPR, "Alice <alice@org>")),
    ("[GNUPG:] NEWSIG\n[GNUPG:] REVKEYSIG F75E71239C4DAC7C Alice <alice@org>\n", 0,
     Outcome(False, "SignatureKeyRevoked", "F75E71239C4DAC7C", "Alice <alice@org>")),
    ("[GNUPG:] NEWSIG\n[GNUPG:] EXPSIG F75E71239C4DAC7C Alice <alice@org>\n", 0,
     Outcome(False, "SignatureInvalid", "F75E71239C4DAC7C", "Alice <alice@org>")),
    (GOOD + GOOD, 0, Outcome(False, "SignatureInvalid")),  # two signatures: never "the first one is good"
    ("", 2, Outcome(False, "VerificationFailed")),
])
def test_interpret_gpg(status: str, rc: int, expected: Outcome) -> None:
    assert interpret_gpg(status, rc) == expected


SSH_FP = "SHA256:QxP4/wFI5NDnaSx2bsvfR0lk5fIyJ1U+jY4QgaFBBk8"
UNCHECKED = f'Good "git" signature with ED25519 key {SSH_FP}\n'


@pytest.mark.parametrize(("args", "expected"), [
    (("bob@org\n", 0, f'Good "git" signature for bob@org with ED25519 key {SSH_FP}\n', 0, UNCHECKED),
     Outcome(True, "Verified", SSH_FP, "bob@org")),
    (("", 255, "", 1, UNCHECKED), Outcome(False, "SignerUntrusted", SSH_FP)),
    (("", 255, "", 1, "Could not verify signature.\n"), Outcome(False, "SignatureInvalid")),
    (("bob@org\n", 0, "Signature verification failed: incorrect signature\n", 255, UNCHECKED),
     Outcome(False, "SignatureInvalid", SSH_FP, "bob@org")),
    (("bob@org\n", 0, f'Good "file" signature for bob@org with ED25519 key {SSH_FP}\n', 0, UNCHECKED),
     Outcome(False, "SignatureInvalid", SSH_FP)),
])
def test_interpret_ssh(args: tuple[str, int, str, int, str], expected: Outcome) -> None:
    assert interpret_ssh(*args) == expected


def test_signer_refusal_and_verified_by() -> None:
    alice = Outcome(True, "Verified", FPR, "Alice <alice@org>")
    assert alice.signer == f"Alice <alice@org> (OpenPGP {FPR})"
    assert Outcome(True, "Verified", SSH_FP, "bob@org").signer == f"bob@org (SSH {SSH_FP})"
    assert Outcome(False, "SignerUntrusted", "F75E71239C4DAC7C").signer == "OpenPGP key F75E71239C4DAC7C"
    assert verified_by(("tag v1", alice), ("commit", alice)) == alice.signer
    bob = Outcome(True, "Verified", SSH_FP, "bob@org")
    assert verified_by(("tag v1", alice), ("commit", bob)) == f"tag v1: {alice.signer}; commit: {bob.signer}"
    where = Policy("HEAD", "team", "keys", "Application")
    text = refusal(Outcome(False, "SignerUntrusted", SSH_FP), what="commit 1a2b3c4 by eve@org", policy_=where)
    assert text.startswith("commit 1a2b3c4 by eve@org is signed by a key that is not trusted "
                           f"(signer: SSH key {SSH_FP})")
    assert "Secret team/keys" in text and "add the signer's public key" in text
    assert text.endswith("nothing applied or pruned")
    assert "is not signed" in refusal(signatures.unsigned(), what="commit 1a2b3c4", policy_=where)


def test_the_stamp_names_the_verified_signer_additively() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}}
    plain = stamp(obj, application="ns/app", source=Source("r", "c" * 40, "a@org", "t", "p.yaml"), enforcement="deny")
    assert "driftguard.io/verified-by" not in plain["metadata"]["annotations"]
    assert read_stamp(plain).source.verified_by == ""  # type: ignore[union-attr]
    signed = stamp(obj, application="ns/app", enforcement="deny",
                   source=Source("r", "c" * 40, "a@org", "t", "p.yaml", verified_by="Alice (OpenPGP X)"))
    assert signed["metadata"]["annotations"]["driftguard.io/verified-by"] == "Alice (OpenPGP X)"
    assert read_stamp(signed).source.verified_by == "Alice (OpenPGP X)"  # type: ignore[union-attr]
    assert signed["metadata"]["annotations"]["driftguard.io/declared"] == plain["metadata"]["annotations"][
        "driftguard.io/declared"]

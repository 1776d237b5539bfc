"""Verified commit signatures, decided: the ``verify`` policy, the trusted keys, git's signed objects and what a
verification's output means. Pure; no I/O (``reconciler.signing`` runs ``gpg`` and ``ssh-keygen``).

The policy is Flux's ``spec.verify`` and Argo CD's source integrity: ``verify: {mode, keys: {secretRef: {name}}}``
on an Application or on a Project (then it holds for every Application of the project; an Application may make
the mode stricter, never weaker, and never adds keys of its own: the Project's Secret is the trust).

* ``HEAD`` — the commit ``targetRevision`` resolves to carries a good signature from a trusted key;
* ``Tag`` — ``targetRevision`` names an annotated tag whose own signature is good and trusted (a lightweight
  tag, a branch or a commit is refused);
* ``TagAndHEAD`` — both.

The keys are a Secret's: every key whose name ends ``.asc`` or ``.gpg`` is an OpenPGP public key (armored or
binary); ``allowed_signers`` (or a name ending ``allowed_signers``) is an OpenSSH allowed-signers file; every
key ending ``.pub`` is one SSH public key per line (its principal is the line's comment, else the key name).
Nothing else in the Secret is read. A signature is trusted exactly when it verifies with one of those keys:
there is no web of trust and no keyserver.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

Mode = Literal["HEAD", "Tag", "TagAndHEAD"]
MODES: Final[tuple[str, ...]] = get_args(Mode)
SSH_NAMESPACE: Final = "git"  # what git signs with (ssh-keygen -Y sign -n git)
# Why a signature is not accepted: a condition reason each.
Reason = Literal["SignatureMissing", "SignatureInvalid", "SignerUntrusted", "SignatureKeyExpired",
                 "SignatureKeyRevoked", "SignatureUnsupported", "VerificationFailed", "TagRequired"]
_SSH_KEY = re.compile(r"^(?:sk-)?(?:ssh|ecdsa)-[A-Za-z0-9@.-]+$")
_PGP_BEGIN: Final = b"-----BEGIN PGP SIGNATURE-----"
_SSH_BEGIN: Final = b"-----BEGIN SSH SIGNATURE-----"
_X509_BEGIN: Final = b"-----BEGIN SIGNED MESSAGE-----"
_SIG_HEADERS: Final = (b"gpgsig", b"gpgsig-sha256")


class VerifyError(ValueError):
    """A ``verify`` field or a key Secret that cannot be used; the message names the field or key and the fix."""


# ---------------------------------------------------------------- the policy

@dataclass(frozen=True, slots=True)
class VerifySpec:
    """``spec.verify`` of an Application or a Project."""

    mode: Mode
    secret: str  # keys.secretRef.name


def parse_verify(value: Any, where: str) -> VerifySpec | None:
    """``verify`` (None when absent); ``VerifyError`` naming ``where`` (e.g. ``spec.verify``) otherwise."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise VerifyError(f"{where} must be an object: "
                          "{mode: HEAD | Tag | TagAndHEAD, keys: {secretRef: {name}}}")
    mode = value.get("mode", "HEAD")
    if mode not in MODES:
        raise VerifyError(f"{where}.mode {mode!r} must be one of {', '.join(MODES)}")
    keys = value.get("keys")
    ref = keys.get("secretRef") if isinstance(keys, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    if not isinstance(name, str) or not name.strip():
        raise VerifyError(f"{where}.keys.secretRef.name is required: a Secret holding the trusted public keys "
                          "(*.asc / *.gpg OpenPGP keys, *.pub or allowed_signers SSH keys)")
    return VerifySpec(mode, name.strip())


@dataclass(frozen=True, slots=True)
class Policy:
    """What a sync must verify: the mode in force and where the trusted keys are."""

    mode: Mode
    secret_namespace: str
    secret: str
    by: str  # "Application" or "Project <name>": whose verify this is, for messages

    @property
    def head(self) -> bool:
        return self.mode in ("HEAD", "TagAndHEAD")

    @property
    def tag(self) -> bool:
        return self.mode in ("Tag", "TagAndHEAD")

    @property
    def described(self) -> str:
        return f"{self.mode} ({self.by}'s spec.verify, keys in Secret {self.secret_namespace}/{self.secret})"


def stricter(a: Mode, b: Mode) -> Mode:
    """The mode requiring everything either requires."""
    head = "HEAD" in (a, b) or "TagAndHEAD" in (a, b)
    tag = "Tag" in (a, b) or "TagAndHEAD" in (a, b)
    return "TagAndHEAD" if head and tag else ("Tag" if tag else "HEAD")


def policy(app: VerifySpec | None, project: VerifySpec | None, *, app_namespace: str, project_name: str,
           project_namespace: str) -> Policy | None:
    """The verification in force for an Application (None: none). A Project's verify binds every Application of
    the project; the Application's may only add requirements to its mode (its keys are not used then)."""
    if project is not None:
        mode = stricter(project.mode, app.mode) if app is not None else project.mode
        return Policy(mode, project_namespace, project.secret, f"Project {project_name}")
    if app is not None:
        return Policy(app.mode, app_namespace, app.secret, "Application")
    return None


# ---------------------------------------------------------------- the trusted keys

@dataclass(frozen=True, slots=True)
class Keyring:
    """The trusted keys of one Secret: OpenPGP keys (name, bytes) and allowed-signers lines."""

    openpgp: tuple[tuple[str, bytes], ...] = ()
    ssh: tuple[str, ...] = ()
    digest: str = ""  # of everything above: part of the verification cache key

    def __bool__(self) -> bool:
        return bool(self.openpgp or self.ssh)

    def allowed_signers(self) -> str:
        return "".join(line + "\n" for line in self.ssh)


def keyring(data: Mapping[str, str], *, secret: str) -> Keyring:
    """The keys in a Secret's ``data`` (base64 values); ``VerifyError`` naming the Secret and key when a key cannot
    be read, or when there is none."""
    openpgp: list[tuple[str, bytes]] = []
    ssh: list[str] = []
    for name in sorted(data):
        lower = name.lower()
        if not lower.endswith((".asc", ".gpg", ".pub", "allowed_signers")):
            continue
        try:
            raw = base64.b64decode(data[name] or "", validate=True)
        except (binascii.Error, ValueError) as e:
            raise VerifyError(f"Secret {secret} key {name} is not base64") from e
        if lower.endswith((".asc", ".gpg")):
            if b"PRIVATE KEY" in raw:
                raise VerifyError(f"Secret {secret} key {name} holds a private key: give the public key only "
                                  "(gpg --armor --export <fingerprint>)")
            if not raw.strip():
                raise VerifyError(f"Secret {secret} key {name} is empty")
            openpgp.append((name, raw))
            continue
        try:
            text = raw.decode()
        except UnicodeDecodeError as e:
            raise VerifyError(f"Secret {secret} key {name} is not text (an SSH public key or an allowed_signers "
                              "file)") from e
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if lower.endswith(".pub"):
            ssh.extend(_signer_line(line, name, secret) for line in lines)
        else:
            ssh.extend(_checked_allowed(line, name, secret) for line in lines)
    if not openpgp and not ssh:
        raise VerifyError(f"Secret {secret} holds no public keys: add OpenPGP keys as *.asc or *.gpg, or SSH keys as "
                          "*.pub or allowed_signers")
    digest = hashlib.sha256()
    for name, raw in openpgp:
        digest.update(name.encode() + b"\0" + raw + b"\0")
    for line in ssh:
        digest.update(line.encode() + b"\n")
    return Keyring(tuple(openpgp), tuple(ssh), digest.hexdigest())


def _signer_line(line: str, name: str, secret: str) -> str:
    """An allowed-signers line for one ``*.pub`` line (``type key [comment]``)."""
    parts = line.split()
    if len(parts) < 2 or not _SSH_KEY.match(parts[0]):
        raise VerifyError(f"Secret {secret} key {name}: {line[:40]!r} is not an SSH public key (type key [comment])")
    principal = parts[2] if len(parts) > 2 and _principal_ok(parts[2]) else name[: -len(".pub")] or "signer"
    return f'{principal} namespaces="{SSH_NAMESPACE}" {parts[0]} {parts[1]}'


def _checked_allowed(line: str, name: str, secret: str) -> str:
    """An allowed-signers line as given, when it has a principal and a key (ssh-keygen's format)."""
    parts = line.split()
    if len(parts) < 3 or not any(_SSH_KEY.match(p) for p in parts[1:]):
        raise VerifyError(f"Secret {secret} key {name}: {line[:40]!r} is not an allowed-signers line "
                          "(principals [options] type key)")
    return line


def _principal_ok(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9._@+-]+$", text))


# ---------------------------------------------------------------- git's signed objects

Kind = Literal["openpgp", "ssh", "x509", ""]


@dataclass(frozen=True, slots=True)
class Signed:
    """One git object split into what was signed and the signature (``signature`` empty: unsigned)."""

    payload: bytes
    signature: bytes = b""
    target: str = ""  # a tag's ``object``
    target_type: str = ""  # a tag's ``type``
    name: str = ""  # a tag's ``tag``

    @property
    def kind(self) -> Kind:
        return signature_kind(self.signature)


def signature_kind(signature: bytes) -> Kind:
    head = signature.lstrip()
    if head.startswith(_PGP_BEGIN):
        return "openpgp"
    if head.startswith(_SSH_BEGIN):
        return "ssh"
    if head.startswith(_X509_BEGIN):
        return "x509"
    return ""


def split_commit(raw: bytes) -> Signed:
    """A raw commit object (``git cat-file commit``): the payload git signs is the object without its ``gpgsig``
    header (its continuation lines start with a space)."""
    header, sep, message = raw.partition(b"\n\n")
    kept: list[bytes] = []
    signature: list[bytes] = []
    inside = False
    for line in header.split(b"\n"):
        name = line.split(b" ", 1)[0]
        if name in _SIG_HEADERS and not signature:
            inside = True
            signature.append(line[len(name) + 1:])
            continue
        if inside and line.startswith(b" "):
            signature.append(line[1:])
            continue
        inside = False
        kept.append(line)
    payload = b"\n".join(kept) + sep + message
    return Signed(payload, b"\n".join(signature) + b"\n" if signature else b"")


def split_tag(raw: bytes) -> Signed:
    """A raw tag object (``git cat-file tag``): its signature is the end of the message, from the last armor line."""
    header = raw.partition(b"\n\n")[0]
    fields: dict[bytes, bytes] = {}
    for line in header.split(b"\n"):
        key, _, value = line.partition(b" ")
        fields.setdefault(key, value)
    start = max(raw.rfind(b"\n" + begin) for begin in (_PGP_BEGIN, _SSH_BEGIN, _X509_BEGIN))
    payload, signature = (raw[: start + 1], raw[start + 1:]) if start > len(header) else (raw, b"")
    return Signed(payload, signature, target=fields.get(b"object", b"").decode(),
                  target_type=fields.get(b"type", b"").decode(), name=fields.get(b"tag", b"").decode())


# ---------------------------------------------------------------- what a verification says

@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict on one signature: ``ok`` with the signer, or the reason it is refused."""

    ok: bool
    reason: Reason | Literal["Verified"] = "Verified"
    fingerprint: str = ""  # OpenPGP: the signing key's primary fingerprint; SSH: SHA256:…
    identity: str = ""  # OpenPGP: the user id; SSH: the allowed-signers principal
    detail: str = field(default="", compare=False)  # the tool's own words, when refused

    @property
    def signer(self) -> str:
        """``Alice <alice@org> (OpenPGP 469A…AC7C)``; "" when nothing names one."""
        if not self.fingerprint:
            return self.identity
        kind = "SSH" if self.fingerprint.startswith("SHA256:") else "OpenPGP"
        return f"{self.identity} ({kind} {self.fingerprint})" if self.identity else f"{kind} key {self.fingerprint}"


def unsigned() -> Outcome:
    return Outcome(False, "SignatureMissing")


def interpret_gpg(status: str, returncode: int) -> Outcome:
    """``gpg --status-fd`` lines of one ``--verify`` (its keyring: the Secret's keys only)."""
    found: dict[str, list[str]] = {}
    for line in status.splitlines():
        if line.startswith("[GNUPG:] "):
            word, _, rest = line[9:].partition(" ")
            found.setdefault(word, []).append(rest)
    if len(found.get("NEWSIG", [])) > 1:
        return Outcome(False, "SignatureInvalid", detail="more than one signature")

    def first(word: str) -> list[str]:
        return found[word][0].split(" ") if found.get(word) else []
    if "BADSIG" in found:
        keyid, *uid = first("BADSIG")
        return Outcome(False, "SignatureInvalid", keyid, " ".join(uid), "BAD signature (the content does not match)")
    if "ERRSIG" in found:
        parts = first("ERRSIG")
        keyid = parts[-1] if len(parts) >= 7 and parts[-1] not in ("-", "") else (parts[0] if parts else "")
        if "NO_PUBKEY" in found or (len(parts) > 5 and parts[5] == "9"):
            return Outcome(False, "SignerUntrusted", keyid, detail="signed by a key not in the trusted keys")
        return Outcome(False, "VerificationFailed", keyid, detail="the signature could not be checked "
                       f"(algorithm {parts[1] if len(parts) > 1 else '?'})")
    for word, reason in (("EXPKEYSIG", "SignatureKeyExpired"), ("REVKEYSIG", "SignatureKeyRevoked")):
        if word in found:
            keyid, *uid = first(word)
            fpr = _validsig_fingerprint(first("VALIDSIG")) or keyid
            why = "the signing key has expired" if word == "EXPKEYSIG" else "the signing key is revoked"
            return Outcome(False, reason, fpr, " ".join(uid), why)  # type: ignore[arg-type]
    if "EXPSIG" in found:
        keyid, *uid = first("EXPSIG")
        return Outcome(False, "SignatureInvalid", keyid, " ".join(uid), "the signature has expired")
    if "GOODSIG" in found and "VALIDSIG" in found and returncode == 0:
        _, *uid = first("GOODSIG")
        return Outcome(True, "Verified", _validsig_fingerprint(first("VALIDSIG")), " ".join(uid))
    return Outcome(False, "VerificationFailed", detail=f"gpg exited with status {returncode} without a good signature")


def _validsig_fingerprint(parts: list[str]) -> str:
    """VALIDSIG's primary-key fingerprint (its 10th field), else the signing key's (its 1st)."""
    if len(parts) >= 10 and parts[9]:
        return parts[9]
    return parts[0] if parts else ""


_SSH_GOOD = re.compile(r'^Good "(?P<ns>[^"]*)" signature (?:for (?P<who>.+?) )?with (?P<type>\S+) key (?P<fp>\S+)')


def interpret_ssh(principals: str, found_rc: int, verify_out: str, verify_rc: int, unchecked: str) -> Outcome:
    """``ssh-keygen -Y find-principals`` (stdout, status), then ``-Y verify`` (output, status), and
    ``-Y check-novalidate``'s output (the signing key's fingerprint whether or not it is trusted)."""
    signer = _SSH_GOOD.search(unchecked.strip().splitlines()[0] if unchecked.strip() else "")
    fingerprint = signer.group("fp") if signer else ""
    if found_rc != 0 or not principals.strip():
        if not fingerprint:
            return Outcome(False, "SignatureInvalid", detail="the SSH signature does not verify")
        return Outcome(False, "SignerUntrusted", fingerprint, detail="signed by a key not in the trusted keys")
    good = next((m for line in verify_out.splitlines() if (m := _SSH_GOOD.search(line.strip()))), None)
    if verify_rc != 0 or good is None:
        words = "; ".join(line.strip() for line in verify_out.splitlines() if line.strip())[:200]
        return Outcome(False, "SignatureInvalid", fingerprint, principals.split(maxsplit=1)[0],
                       words or "verification failed")
    if good.group("ns") != SSH_NAMESPACE:
        return Outcome(False, "SignatureInvalid", good.group("fp"), detail=f"signed for namespace {good.group('ns')!r}")
    return Outcome(True, "Verified", good.group("fp"), good.group("who") or principals.split(maxsplit=1)[0])


# ---------------------------------------------------------------- the messages

FIXES: Final[Mapping[str, str]] = {
    "SignatureMissing": "sign it (git commit -S, or git -c gpg.format=ssh commit -S) with a trusted key and push",
    "SignatureInvalid": "the signature does not match the content: re-sign the commit or tag with a trusted key",
    "SignerUntrusted": "sign with a trusted key, or add the signer's public key to the key Secret",
    "SignatureKeyExpired": "extend the key's expiry (gpg --quick-set-expire) and update the key Secret, or re-sign",
    "SignatureKeyRevoked": "re-sign with a key that is not revoked",
    "SignatureUnsupported": "sign with OpenPGP (gpg) or SSH (gpg.format=ssh); X.509 signatures are not verified",
    "VerificationFailed": "check the key Secret's keys and the signature",
}


def refusal(outcome: Outcome, *, what: str, policy_: Policy) -> str:
    """``commit 1a2b3c4 is not signed …; <fix>; nothing applied or pruned``: the condition's message."""
    says = {
        "SignatureMissing": "is not signed",
        "SignatureInvalid": "has a bad signature",
        "SignerUntrusted": "is signed by a key that is not trusted",
        "SignatureKeyExpired": "is signed by an expired key",
        "SignatureKeyRevoked": "is signed by a revoked key",
        "SignatureUnsupported": "has a signature of a kind driftguard does not verify",
        "VerificationFailed": "could not be verified",
    }.get(outcome.reason, "could not be verified")
    signer = f" (signer: {outcome.signer})" if outcome.signer else ""
    detail = f" ({outcome.detail})" if outcome.detail and outcome.reason not in ("SignerUntrusted",) else ""
    return (f"{what} {says}{signer}{detail}; verify mode {policy_.described} requires a good signature from a "
            f"trusted key: {FIXES.get(outcome.reason, FIXES['VerificationFailed'])}; nothing applied or pruned")


def verified_by(*signers: tuple[str, Outcome]) -> str:
    """What the stamp and status name: ``Alice <alice@org> (OpenPGP 469A…)`` or, for a tag and a commit signed
    by different keys, both (``tag v1: …; commit: …``)."""
    distinct = {o.signer for _, o in signers}
    if len(distinct) == 1:
        return next(iter(distinct))
    return "; ".join(f"{what}: {o.signer}" for what, o in signers)

"""The signature adapter: the one place that runs ``gpg`` and ``ssh-keygen`` (the decisions are
``driftguard.core.signatures``').

Each OpenPGP verification gets a throwaway ``GNUPGHOME`` (mode 0700, removed after) holding only the Secret's
keys: nothing else is trusted, no keyserver is asked (``--no-auto-key-retrieve``), no agent or dirmngr is started
(``--no-autostart``). SSH signatures are checked as git checks them: ``ssh-keygen -Y find-principals`` and
``-Y verify -n git`` against an allowed-signers file built from the Secret. Every tool runs with a timeout, no
stdin but the payload, and an environment of PATH, a locale and HOME in the scratch directory.

Verdicts are cached per (signed object, keys digest): a git object's id is the hash of its content, signature
included, so the same id with the same keys always gets the same verdict, and a resync does not run gpg again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

from driftguard.core.signatures import Keyring, Outcome, Signed, interpret_gpg, interpret_ssh, unsigned

TIMEOUT: Final = 20.0
CACHE_SIZE: Final = 4096


class ToolMissing(RuntimeError):
    """gpg or ssh-keygen is not installed."""


class Verifier:
    """Verify signed git objects against a Secret's keys, with a bounded cache of verdicts."""

    def __init__(self, *, gpg: str = "gpg", ssh_keygen: str = "ssh-keygen", timeout: float = TIMEOUT) -> None:
        self.gpg, self.ssh_keygen, self.timeout = gpg, ssh_keygen, timeout
        self._cache: OrderedDict[tuple[str, str], Outcome] = OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0  # verifications that ran a tool (not answered from the cache)

    def verify(self, object_id: str, signed: Signed, keys: Keyring) -> Outcome:
        """The verdict on git object ``object_id`` (``signed``: its payload and signature)."""
        key = (object_id, keys.digest)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        outcome = self._verify(signed, keys)
        if outcome.reason != "VerificationFailed":  # a tool that failed to run is asked again next time
            with self._lock:
                self._cache[key] = outcome
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return outcome

    def _verify(self, signed: Signed, keys: Keyring) -> Outcome:
        kind = signed.kind
        if not signed.signature:
            return unsigned()
        if kind in {"x509", ""}:
            return Outcome(False, "SignatureUnsupported", detail="X.509 (gpgsm) or unknown signature format")
        self.runs += 1
        scratch = Path(tempfile.mkdtemp(prefix="dg-sig-"))
        try:
            (scratch / "payload").write_bytes(signed.payload)
            (scratch / "signature").write_bytes(signed.signature)
            if kind == "openpgp":
                return self._gpg(scratch, keys)
            return self._ssh(scratch, keys)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _gpg(self, scratch: Path, keys: Keyring) -> Outcome:
        if not keys.openpgp:
            return Outcome(False, "SignerUntrusted",
                           detail="an OpenPGP signature, and the key Secret holds no OpenPGP key")
        home = scratch / "gnupg"
        home.mkdir(mode=0o700)
        base = [self.gpg, "--homedir", str(home), "--batch", "--no-tty", "--no-autostart", "--no-auto-key-retrieve",
                "--no-options", "--status-fd", "1"]
        files = []
        for index, (_, data) in enumerate(keys.openpgp):
            path = scratch / f"key{index}"
            path.write_bytes(data)
            files.append(str(path))
        imported = self._run([*base, "--import", *files], scratch)
        if imported is None:
            return Outcome(False, "VerificationFailed", detail=f"{self.gpg} did not answer within {self.timeout:.0f}s")
        if "IMPORT_OK" not in imported[0]:
            return Outcome(False, "VerificationFailed",
                           detail="none of the key Secret's OpenPGP keys could be imported")
        result = self._run([*base, "--trust-model", "always", "--verify", str(scratch / "signature"),
                            str(scratch / "payload")], scratch)
        if result is None:
            return Outcome(False, "VerificationFailed", detail=f"{self.gpg} did not answer within {self.timeout:.0f}s")
        return interpret_gpg(result[0], result[2])

    def _ssh(self, scratch: Path, keys: Keyring) -> Outcome:
        if not keys.ssh:
            return Outcome(False, "SignerUntrusted", detail="an SSH signature, and the key Secret holds no SSH key")
        allowed = scratch / "allowed_signers"
        allowed.write_text(keys.allowed_signers())
        signature = str(scratch / "signature")
        payload = (scratch / "payload").read_bytes()
        unchecked = self._run([self.ssh_keygen, "-Y", "check-novalidate", "-n", "git", "-s", signature], scratch,
                              stdin=payload)
        found = self._run([self.ssh_keygen, "-Y", "find-principals", "-f", str(allowed), "-s", signature], scratch)
        if unchecked is None or found is None:
            return Outcome(False, "VerificationFailed", detail=f"{self.ssh_keygen} did not answer in time")
        principal = found[0].split("\n", 1)[0].strip()
        verify = ("", "", 1)
        if found[2] == 0 and principal:
            ran = self._run([self.ssh_keygen, "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", "git",
                             "-s", signature], scratch, stdin=payload)
            if ran is None:
                return Outcome(False, "VerificationFailed", detail=f"{self.ssh_keygen} did not answer in time")
            verify = ran
        return interpret_ssh(found[0], found[2], verify[0] + verify[1], verify[2], unchecked[0] + unchecked[1])

    def _run(self, argv: list[str], scratch: Path, *, stdin: bytes = b"") -> tuple[str, str, int] | None:
        """(stdout, stderr, status); None on a timeout; ``ToolMissing`` when the tool is not installed."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": str(scratch), "GNUPGHOME": str(scratch / "gnupg")}
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, timeout=self.timeout, env=env, cwd=scratch,
                                  check=False, start_new_session=True)
        except FileNotFoundError as e:
            raise ToolMissing(f"{argv[0]} is not installed: driftguard verifies signatures with gpg (Debian: gnupg) "
                              "and ssh-keygen (Debian: openssh-client)") from e
        except subprocess.TimeoutExpired:
            return None
        return done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), done.returncode

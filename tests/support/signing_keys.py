"""Real signing keys for the signature tests: an OpenPGP key (gpg, no passphrase, in a throwaway GNUPGHOME) and an
SSH key (ssh-keygen), and git commands that sign with them.

gpg and ssh-keygen missing is a failure under CI=true (``.ci/run`` installs gnupg and openssh-client), a skip that
says what to install otherwise.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


def require_tools() -> None:
    missing = [tool for tool in ("gpg", "ssh-keygen", "gpgconf") if shutil.which(tool) is None]
    if missing:
        message = (f"{', '.join(missing)} not installed: signature verification needs gpg and ssh-keygen "
                   "(Debian: apt-get install gnupg openssh-client; .ci/run installs them)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class GpgKey:
    home: Path  # its own GNUPGHOME (short: under /tmp, for gpg-agent's socket)
    uid: str
    fingerprint: str

    def public(self) -> bytes:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--armor", "--export", self.fingerprint],
                              check=True, capture_output=True).stdout

    def git_config(self) -> list[str]:
        return ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={self.fingerprint}"]

    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def gpg_key(uid: str) -> GpgKey:
    home = Path(tempfile.mkdtemp(prefix="dg-gpg-"))
    home.chmod(0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519",
                    "sign", "never"], check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-keys"], check=True,
                             capture_output=True, text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return GpgKey(home, uid, fingerprint)


@dataclass
class SshKey:
    path: Path  # the private key; .pub beside it

    def public(self) -> str:
        return self.path.with_suffix(".pub").read_text()

    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.path.with_suffix(".pub"))],
                             check=True, capture_output=True, text=True).stdout
        return out.split()[1]

    def git_config(self) -> list[str]:
        return ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.path}"]

    def env(self) -> dict[str, str]:
        return {}


def ssh_key(directory: Path, name: str, comment: str) -> SshKey:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   capture_output=True)
    return SshKey(path)


def git(cwd: Path, *args: str, key: GpgKey | SshKey | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@org",
           "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@org", **(key.env() if key else {})}
    config = key.git_config() if key else []
    return subprocess.run(["git", *config, *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def signed_commit(cwd: Path, message: str, key: GpgKey | SshKey | None) -> str:
    """Commit everything, signed with ``key`` (None: unsigned); the commit's id."""
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--allow-empty", *(["-S"] if key else ["--no-gpg-sign"]), "-m", message, key=key)
    return git(cwd, "rev-parse", "HEAD")


def secret_data(keys: dict[str, bytes | str]) -> dict[str, str]:
    """A Secret's ``data`` (base64) from key name → content."""
    return {name: base64.b64encode(v.encode() if isinstance(v, str) else v).decode() for name, v in keys.items()}

"""The git adapter: the only module that imports GitPython (an import contract enforces it).

One bare cache repository per repo URL *and credential* (under ``cache_dir``: an Application without
the right credentials never reads objects another one fetched), fetched each cycle; the tree of the
resolved commit is read straight from the object database, so there is no working tree to keep
clean. GitPython leaks its persistent ``git cat-file`` processes in long-running programs, so every
operation opens the cache repository and closes it before returning.

Sources: https, ssh, ``file://`` and local paths. Credentials (from the Application's Secret) reach
git through its environment only — a token as an ``http.extraHeader`` via ``GIT_CONFIG_*``, an SSH key
as a 0600 temporary file named in ``GIT_SSH_COMMAND`` — never on a command line, never in a log. A
private CA for an https server (``ca.crt`` or ``caFile`` in the Secret) is written to a 0600 temporary
file named in ``GIT_SSL_CAINFO``, which wins over ``http.sslCAInfo`` and an inherited ``GIT_SSL_CAINFO``;
it replaces the default trust store for that fetch. TLS verification is never turned off.
Errors are ``SourceError`` with a condition reason (``FetchFailed``, ``RevisionNotFound``,
``PathNotFound``) and a message free of credentials; a refused login says "authentication failed".
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import git
from git.exc import BadName, GitCommandError

from driftguard.core.clock import format_time
from reconciler.revision import Revision, redact_url

Reason = Literal["FetchFailed", "RevisionNotFound", "PathNotFound", "TooLarge", "AuthenticationRequired",
                 "AuthenticationFailed", "CredentialsRefused"]
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
MAX_REVISION_BYTES: Final = 256 * 1024 * 1024
HEAD_REF: Final = "refs/driftguard/HEAD"
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_SECRETS = re.compile(r"(Authorization:\s*\S+\s+)\S+", re.IGNORECASE)
# git's words for an https login the server refused (with prompts off, a 401 reads "could not read Username")
_AUTH_FAILED = re.compile(r"could not read (Username|Password) for|Authentication failed for|"
                          r"requested URL returned error: 40[13]")


class SourceError(Exception):
    """The source could not be read at the wanted revision; ``reason`` names the condition."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class Credentials:
    """Repository credentials from a Secret (Argo CD's and Flux's key names are both accepted)."""

    username: str = ""
    token: str = field(default="", repr=False)
    ssh_key: str = field(default="", repr=False)
    known_hosts: str = ""
    ca: str = ""  # PEM: the CA(s) to trust for an https repository instead of the default trust store

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> Credentials:
        """From a Secret's ``data`` (base64 values)."""
        def get(*keys: str) -> str:
            for key in keys:
                if data.get(key):
                    return base64.b64decode(data[key]).decode()
            return ""

        return cls(
            username=get("username"),
            token=get("password", "token"),
            ssh_key=get("sshPrivateKey", "identity"),
            known_hosts=get("known_hosts"),
            ca=get("ca.crt", "caFile"),
        )


@dataclass(frozen=True, slots=True)
class TagRef:
    """``refs/tags/<name>``: ``annotated`` (``id`` the tag object's, ``raw`` it), ``lightweight`` (``id`` the
    commit's) or ``none``."""

    kind: Literal["annotated", "lightweight", "none"]
    id: str = ""
    raw: bytes = field(default=b"", repr=False)


class GitSource:
    """Fetch and read repositories through per-URL bare caches."""

    def __init__(self, cache_dir: Path, *, timeout: float = 60.0, max_file: int = MAX_FILE_BYTES,
                 max_total: int = MAX_REVISION_BYTES) -> None:
        self.cache_dir = Path(cache_dir)
        self.timeout = timeout
        self.max_file, self.max_total = max_file, max_total
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def resolve(self, url: str, target: str, credentials: Credentials | None = None) -> Revision:
        """Fetch ``url`` and resolve ``target`` (branch, tag, commit or ``HEAD``) to a commit."""
        with self._lock(url, credentials), _environment(credentials) as env, self._open(url, credentials) as repo:
            self._fetch(repo, url, ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], env)
            if target == "HEAD":
                self._fetch(repo, url, [f"+HEAD:{HEAD_REF}"], env)
            commit = _find_commit(repo, target)
            if commit is None and _HEX.match(target) and len(target) == 40:
                with contextlib.suppress(SourceError):
                    self._fetch(repo, url, [target], env)
                commit = _find_commit(repo, target)
            if commit is None:
                raise SourceError("RevisionNotFound", f"{redact_url(url)}: revision {target!r} not found "
                                  "(no such branch, tag or commit)")
            return _revision(commit)

    def read(self, url: str, sha: str, path: str, want: Callable[[str], bool], *,
             credentials: Credentials | None = None) -> list[tuple[str, bytes]]:
        """(repository path, content) of every wanted file under ``path`` at commit ``sha`` (in the cache
        ``credentials`` fetched into)."""
        with self._lock(url, credentials), self._open(url, credentials) as repo:
            tree = _tree(repo, sha, path)
            files: list[tuple[str, bytes]] = []
            total = 0
            for item in tree.traverse():
                if isinstance(item, git.Blob) and item.mode != git.Blob.link_mode and want(str(item.path)):
                    total += item.size
                    if item.size > self.max_file or total > self.max_total:
                        what = (f"{item.path} is {item.size} bytes, over the {self.max_file}-byte limit of one file "
                                "(--max-file-bytes)" if item.size > self.max_file else
                                f"the manifests under {path or '/'} hold over {self.max_total} bytes "
                                "(--max-revision-bytes)")
                        raise SourceError("TooLarge", f"{what} at {sha[:7]}")
                    files.append((str(item.path), bytes(item.data_stream.read())))
            return files

    def paths(self, url: str, sha: str, path: str, *, credentials: Credentials | None = None) -> list[str]:
        """The repository paths of every file under ``path`` at commit ``sha`` (nothing read)."""
        with self._lock(url, credentials), self._open(url, credentials) as repo:
            return [str(item.path) for item in _tree(repo, sha, path).traverse()
                    if isinstance(item, git.Blob) and item.mode != git.Blob.link_mode]

    def export(self, url: str, sha: str, dest: Path, *, credentials: Credentials | None = None) -> list[str]:
        """Write every file of commit ``sha`` under ``dest`` (what a renderer may read: the whole repository,
        since a kustomization may use a sibling directory); the repository paths written. Symbolic links are
        not written (nothing may point outside ``dest``). SourceError when a file or the total is too big."""
        written: list[str] = []
        total, max_file, max_total = 0, self.max_file, self.max_total
        with self._lock(url, credentials), self._open(url, credentials) as repo:
            try:
                tree = repo.commit(sha).tree
            except (KeyError, ValueError, BadName) as e:
                raise SourceError("PathNotFound", f"commit {sha[:7]} is not in the fetched repository") from e
            for item in tree.traverse():
                if not isinstance(item, git.Blob) or item.mode == git.Blob.link_mode:
                    continue
                path = str(item.path)
                if item.size > max_file:
                    raise SourceError("TooLarge", f"{path} is {item.size} bytes at {sha[:7]}, over the "
                                                  f"{max_file}-byte limit of one file (--max-file-bytes)")
                total += item.size
                if total > max_total:
                    raise SourceError("TooLarge", f"the repository at {sha[:7]} holds over {max_total} bytes "
                                                  "(--max-revision-bytes)")
                target = dest / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bytes(item.data_stream.read()))
                written.append(path)
        return written

    def raw_commit(self, url: str, sha: str, *, credentials: Credentials | None = None) -> bytes:
        """The raw commit object ``sha`` (``git cat-file commit``: what its signature covers, and the signature)."""
        with self._lock(url, credentials), self._open(url, credentials) as repo:
            try:
                stream = repo.odb.stream(bytes.fromhex(sha))
            except (KeyError, ValueError, BadName) as e:
                raise SourceError("RevisionNotFound", f"commit {sha[:7]} is not in the fetched repository") from e
            return bytes(stream.read())

    def tag_object(self, url: str, name: str, *, credentials: Credentials | None = None) -> TagRef:
        """What ``refs/tags/<name>`` is in the fetched cache: an annotated tag (its id and raw object), a
        lightweight one (a commit id), or none."""
        with self._lock(url, credentials), self._open(url, credentials) as repo:
            # the ref read in-process (loose or packed-refs) and the object by one `git cat-file --batch`, not a
            # `git rev-parse`, a --batch-check and a --batch: starting git was most of a Tag-mode resync
            try:
                target = git.Reference.dereference_recursive(repo, f"refs/tags/{name}")
            except (ValueError, OSError):  # no such tag, or not a valid ref name
                return TagRef("none")
            stream = repo.odb.stream(bytes.fromhex(target))
            raw = bytes(stream.read())  # read whole before the repository closes, whatever the type
            return TagRef("annotated", target, raw) if stream.type == b"tag" else TagRef("lightweight", target)

    def _fetch(self, repo: git.Repo, url: str, refspecs: list[str], env: Mapping[str, str]) -> None:
        try:
            repo.git.fetch(
                "--prune", "--force", "--no-write-fetch-head", "--", url, *refspecs,
                env={**os.environ, **env}, kill_after_timeout=self.timeout,
            )
        except GitCommandError as e:
            message = _git_message(e, url)
            if _AUTH_FAILED.search(message):
                message = ("authentication failed: the server refused the request (missing or wrong credentials in "
                           f"the Secret of spec.source.secretRef); git: {message}")
            elif "Host key verification failed" in message:
                message = ("the SSH host key is unknown or changed: add the server's key as known_hosts to the "
                           f"Secret of spec.source.secretRef (ssh-keyscan, verified out of band); git: {message}")
            raise SourceError("FetchFailed", f"cannot fetch {redact_url(url)}: {message}") from e

    @contextlib.contextmanager
    def _open(self, url: str, credentials: Credentials | None) -> Iterator[git.Repo]:
        directory = self.cache_dir / (hashlib.sha256(cache_key(url, credentials).encode()).hexdigest()[:24] + ".git")
        repo = git.Repo(directory) if directory.exists() else git.Repo.init(directory, bare=True, mkdir=True)
        try:
            yield repo
        finally:
            repo.close()

    def _lock(self, url: str, credentials: Credentials | None) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(cache_key(url, credentials), threading.Lock())


def cache_key(url: str, credentials: Credentials | None) -> str:
    """The cache a fetch of ``url`` with ``credentials`` uses: the URL alone without any, else the URL and a
    digest of the credentials (never the credentials themselves: the key names a directory)."""
    if credentials is None or credentials == Credentials():
        return url
    digest = hashlib.sha256("\0".join((credentials.username, credentials.token, credentials.ssh_key,
                                         credentials.known_hosts, credentials.ca)).encode()).hexdigest()
    return f"{url}\0{digest}"


def _tree(repo: git.Repo, sha: str, path: str) -> git.Tree:
    """The directory ``path`` at commit ``sha`` (SourceError PathNotFound when missing or a file)."""
    try:
        tree = repo.commit(sha).tree
        if path:
            tree = tree / path
    except (KeyError, ValueError, BadName) as e:
        raise SourceError("PathNotFound", f"path {path!r} does not exist at commit {sha[:7]}") from e
    if tree.type != "tree":
        raise SourceError("PathNotFound", f"path {path!r} at commit {sha[:7]} is a file, not a directory")
    return tree


def _find_commit(repo: git.Repo, target: str) -> git.Commit | None:
    names = [HEAD_REF] if target == "HEAD" else [f"refs/heads/{target}", f"refs/tags/{target}", target]
    for name in names:
        if name == target and not (name.startswith("refs/") or _HEX.match(name)):
            continue
        try:
            return repo.commit(repo.git.rev_parse("--verify", "--quiet", f"{name}^{{commit}}"))
        except (GitCommandError, BadName, ValueError):
            continue
    return None


def _revision(commit: git.Commit) -> Revision:
    when = format_time(dt.datetime.fromtimestamp(commit.committed_date, dt.UTC))
    author = commit.author.email or commit.author.name or ""
    subject = str(commit.message).splitlines()[0] if commit.message else ""
    return Revision(sha=commit.hexsha, author=str(author), committed_at=when, subject=subject)


@contextlib.contextmanager
def _environment(credentials: Credentials | None) -> Iterator[dict[str, str]]:
    """git's environment for one fetch: never prompt; credentials only here, cleaned up after."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GCM_INTERACTIVE": "never"}
    # An empty credential.helper resets the helper list: the host's ambient credential helpers (a
    # developer's, a cloud SDK's) are never consulted, with or without the Application's Secret.
    config = [("credential.helper", "")]
    if credentials is None or not (credentials.token or credentials.ssh_key or credentials.ca):
        yield {**env, **_config_env(config)}
        return
    scratch = tempfile.mkdtemp(prefix="driftguard-git-")
    try:
        if credentials.token:
            user = credentials.username or "git"
            basic = base64.b64encode(f"{user}:{credentials.token}".encode()).decode()
            config.append(("http.extraHeader", f"Authorization: Basic {basic}"))
            # The header goes with every request git makes: never to where a redirect points.
            config.append(("http.followRedirects", "false"))
        env.update(_config_env(config))
        if credentials.ca:
            ca = Path(scratch, "ca.crt")
            ca.touch(mode=0o600)
            ca.write_text(credentials.ca.rstrip("\n") + "\n")
            env["GIT_SSL_CAINFO"] = str(ca)
        if credentials.ssh_key:
            key = Path(scratch, "id")
            key.touch(mode=0o600)
            key.write_text(credentials.ssh_key.rstrip("\n") + "\n")
            # Host keys are always checked: against the Secret's known_hosts when it has one, else the
            # system's (/etc/ssh/ssh_known_hosts, ~/.ssh/known_hosts). Never trust-on-first-use.
            known = ""
            if credentials.known_hosts:
                hosts = Path(scratch, "known_hosts")
                hosts.write_text(credentials.known_hosts)
                known = f" -o UserKnownHostsFile={shlex.quote(str(hosts))}"
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {shlex.quote(str(key))} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=yes{known}"
            )
        yield env
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _config_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``git -c`` settings passed through the environment (never on a command line)."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for index, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def _git_message(error: GitCommandError, url: str) -> str:
    text = error.stderr.strip() if isinstance(error.stderr, str) else str(error.stderr or "")
    lines = [line.removeprefix("stderr: ").strip(" '") for line in text.splitlines() if line.strip()]
    message = "; ".join(lines[-3:]) or f"git exited with status {error.status}"
    return _SECRETS.sub(r"\1<redacted>", message.replace(url, redact_url(url)))

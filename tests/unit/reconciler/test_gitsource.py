"""The git adapter against real repositories in a temp dir: refs, paths, errors, credentials."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from support.threads import every_thread_joined

from reconciler.gitsource import Credentials, GitSource, SourceError, _environment, _git_message, cache_key
from reconciler.revision import redact_url


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@org",
           "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@org"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app").mkdir()
    (repo / "app" / "a.yaml").write_text("kind: A\n")
    (repo / "app" / "sub").mkdir()
    (repo / "app" / "sub" / "b.yaml").write_text("kind: B\n")
    (repo / "app" / "README.md").write_text("hi\n")
    os.symlink("a.yaml", repo / "app" / "link.yaml")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "tag", "-a", "v1", "-m", "release 1")
    return repo


@pytest.fixture
def source(tmp_path: Path) -> GitSource:
    return GitSource(tmp_path / "cache")


def test_branch_tag_commit_and_head_resolve(origin: Path, source: GitSource) -> None:
    first = git(origin, "rev-parse", "HEAD")
    (origin / "app" / "a.yaml").write_text("kind: A2\n")
    git(origin, "commit", "-qam", "second")
    second = git(origin, "rev-parse", "HEAD")
    assert source.resolve(str(origin), "main").sha == second
    assert source.resolve(f"file://{origin}", "HEAD").sha == second
    assert source.resolve(str(origin), "v1").sha == first  # annotated tag, peeled
    assert source.resolve(str(origin), first[:8]).sha == first
    assert source.resolve(str(origin), first).sha == first
    assert source.resolve(str(origin), "refs/heads/main").sha == second
    revision = source.resolve(str(origin), "main")
    assert (revision.author, revision.subject, revision.short) == ("alice@org", "second", second[:7])
    assert revision.committed_at.endswith("Z")


def test_reads_only_wanted_files_under_the_path(origin: Path, source: GitSource) -> None:
    sha = source.resolve(str(origin), "main").sha
    files = source.read(str(origin), sha, "app", lambda p: p.endswith(".yaml"))
    assert sorted(files) == [("app/a.yaml", b"kind: A\n"), ("app/sub/b.yaml", b"kind: B\n")]  # no symlink
    assert [p for p, _ in source.read(str(origin), sha, "", lambda p: True)] == [
        "app/README.md", "app/a.yaml", "app/sub/b.yaml"]


def test_a_deleted_branch_is_gone_after_the_next_fetch(origin: Path, source: GitSource) -> None:
    git(origin, "branch", "feature")
    source.resolve(str(origin), "feature")
    git(origin, "branch", "-D", "feature")
    with pytest.raises(SourceError) as error:
        source.resolve(str(origin), "feature")
    assert error.value.reason == "RevisionNotFound"


@pytest.mark.parametrize(("target", "reason"), [("nope", "RevisionNotFound"), ("0" * 40, "RevisionNotFound")])
def test_bad_revisions(origin: Path, source: GitSource, target: str, reason: str) -> None:
    with pytest.raises(SourceError) as error:
        source.resolve(str(origin), target)
    assert error.value.reason == reason and repr(target) in str(error.value)


def test_bad_paths(origin: Path, source: GitSource) -> None:
    sha = source.resolve(str(origin), "main").sha
    with pytest.raises(SourceError, match="path 'missing' does not exist") as error:
        source.read(str(origin), sha, "missing", lambda p: True)
    assert error.value.reason == "PathNotFound"
    with pytest.raises(SourceError, match="is a file, not a directory"):
        source.read(str(origin), sha, "app/a.yaml", lambda p: True)


def test_unreachable_repository(tmp_path: Path, source: GitSource) -> None:
    # git fetch runs under GitPython's watchdog (a Timer for kill_after_timeout), cancelled, not joined, when git
    # exits: the failure is raised before that thread has ended
    with every_thread_joined(), pytest.raises(SourceError) as error:
        source.resolve(str(tmp_path / "absent"), "main")
    assert error.value.reason == "FetchFailed" and "cannot fetch" in str(error.value)


def test_token_goes_in_the_environment_only() -> None:
    with _environment(Credentials(username="bot", token="s3cret")) as env:
        assert env["GIT_CONFIG_COUNT"] == "3"
        assert env["GIT_CONFIG_KEY_1"] == "http.extraHeader"
        assert env["GIT_CONFIG_VALUE_1"] == "Authorization: Basic Ym90OnMzY3JldA=="  # bot:s3cret
        assert (env["GIT_CONFIG_KEY_2"], env["GIT_CONFIG_VALUE_2"]) == ("http.followRedirects", "false")
        assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "s3cret" not in repr(Credentials(token="s3cret", ssh_key="KEY"))


def test_ssh_key_is_a_private_file_removed_afterwards() -> None:
    with _environment(Credentials(ssh_key="-----BEGIN KEY-----\nabc\n-----END KEY-----")) as env:
        command = env["GIT_SSH_COMMAND"]
        key = Path(command.split("-i ", 1)[1].split(" ", 1)[0])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().endswith("-----END KEY-----\n")
        assert "StrictHostKeyChecking=yes" in command and "accept-new" not in command
        assert "UserKnownHostsFile" not in command  # the system's known hosts, never trust-on-first-use
    assert not key.exists()
    with _environment(Credentials(ssh_key="k", known_hosts="github.com ssh-ed25519 AAAA")) as env:
        command = env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=" in command


@pytest.mark.parametrize("credentials", [None, Credentials(), Credentials(token="t"), Credentials(ssh_key="k")])
def test_ambient_credential_helpers_are_never_consulted(credentials: Credentials | None) -> None:
    with _environment(credentials) as env:
        assert env["GIT_CONFIG_KEY_0"] == "credential.helper"
        assert env["GIT_CONFIG_VALUE_0"] == ""


def test_secret_data_keys_of_argo_cd_and_flux() -> None:
    def b64(text: str) -> str:
        import base64

        return base64.b64encode(text.encode()).decode()

    assert Credentials.from_secret_data({"username": b64("u"), "password": b64("p")}) == Credentials("u", "p")
    assert Credentials.from_secret_data({"identity": b64("KEY"), "known_hosts": b64("h")}) == Credentials(
        ssh_key="KEY", known_hosts="h")


@pytest.mark.parametrize(("url", "safe"), [
    ("https://user:tok@github.com/org/repo", "https://github.com/org/repo"),
    ("https://tok@github.com/org/repo", "https://github.com/org/repo"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ("ssh://git@host/org/repo", "ssh://git@host/org/repo"),
    ("/srv/git/repo", "/srv/git/repo"),
])
def test_redacted_urls(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_git_messages_never_carry_credentials() -> None:
    from git.exc import GitCommandError

    error = GitCommandError(["git", "fetch"], 128,
                            stderr="fatal: unable to access 'https://u:tok@h/x': Authorization: Basic abc==")
    message = _git_message(error, "https://u:tok@h/x")
    assert "tok" not in message and "abc==" not in message


def test_no_git_process_or_file_descriptor_outlives_a_call(origin: Path, source: GitSource) -> None:
    def children() -> list[str]:
        listing = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "comm", "--no-headers"],
                                 capture_output=True, text=True, check=True).stdout.split()
        return [name for name in listing if name != "ps"]

    source.resolve(str(origin), "main")
    descriptors = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        sha = source.resolve(str(origin), "main").sha
        source.read(str(origin), sha, "app", lambda p: True)
    assert children() == [], "GitPython's cat-file processes must be closed every cycle"
    assert len(os.listdir("/proc/self/fd")) <= descriptors


def test_the_cache_is_partitioned_by_credential(origin: Path, source: GitSource) -> None:
    """What one credential fetched is not readable with another, or with none: each has its own cache."""
    team_b = Credentials(username="team-b", token="b-token", ca="PEM")
    sha = source.resolve(str(origin), "main", team_b).sha
    assert [p for p, _ in source.read(str(origin), sha, "app", lambda _: True, credentials=team_b)]
    for other in (None, Credentials(username="team-a", token="a-token", ca="PEM")):
        with pytest.raises(SourceError) as error:
            source.read(str(origin), sha, "app", lambda _: True, credentials=other)
        assert error.value.reason == "PathNotFound"
        with pytest.raises(SourceError):
            source.paths(str(origin), sha, "app", credentials=other)
    caches = sorted(p.name for p in source.cache_dir.iterdir())
    assert len(caches) == 3 and not any("b-token" in name for name in caches)
    assert cache_key(str(origin), None) == str(origin), "no credentials: the cache a URL always had"
    assert "b-token" not in cache_key(str(origin), team_b)


def test_tag_objects_loose_packed_lightweight_missing_and_malformed(origin: Path, source: GitSource) -> None:
    git(origin, "tag", "light")
    git(origin, "tag", "-a", "v2", "-m", "release 2")
    git(origin, "pack-refs", "--all")
    git(origin, "tag", "-a", "v3", "-m", "release 3")  # loose, beside the packed ones
    source.resolve(str(origin), "main")  # fetches every tag into the cache
    for name in ("v1", "v2", "v3"):
        tag = source.tag_object(str(origin), name)
        assert (tag.kind, tag.id) == ("annotated", git(origin, "rev-parse", f"refs/tags/{name}"))
        assert f"tag {name}\n".encode() in tag.raw
    light = source.tag_object(str(origin), "light")
    assert (light.kind, light.id) == ("lightweight", git(origin, "rev-parse", "HEAD"))
    for name in ("nope", "../HEAD", "v1^{}", "v1 x"):
        assert source.tag_object(str(origin), name).kind == "none"

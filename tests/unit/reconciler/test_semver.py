"""Chart versions and targetRevision constraints, as Helm and Argo CD (Masterminds semver) read them; and what
an OCI chart source names (registry, repository, tags)."""

from __future__ import annotations

import pytest

from reconciler.chartsource import login_header, under
from reconciler.gitsource import Credentials
from reconciler.ociref import is_loopback, is_oci, parse_reference, tag_of, version_of
from reconciler.semver import ConstraintError, highest, parse_constraint, parse_version

VERSIONS = ["0.1.0", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.0", "1.2.7", "1.3.0-rc.1", "1.3.0", "1.10.0",
            "2.0.0-rc.1", "2.0.0", "v2.1.0"]


@pytest.mark.parametrize(("constraint", "allowed"), [
    ("1.2.7", ["1.2.7"]),
    ("v1.2.7", ["1.2.7"]),
    ("=1.2.0", ["1.2.0"]),
    ("1.2", ["1.2.0", "1.2.7"]),
    ("1.2.*", ["1.2.0", "1.2.7"]),
    ("1.x", ["1.0.0", "1.2.0", "1.2.7", "1.3.0", "1.10.0"]),
    ("*", ["0.1.0", "0.2.3", "0.2.9", "0.3.0", "1.0.0", "1.2.0", "1.2.7", "1.3.0", "1.10.0", "2.0.0", "v2.1.0"]),
    ("^1.2", ["1.2.0", "1.2.7", "1.3.0", "1.10.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"]),
    ("~1.2.3", ["1.2.7"]),
    ("~1.2", ["1.2.0", "1.2.7"]),
    (">=1.0.0 <2.0.0", ["1.0.0", "1.2.0", "1.2.7", "1.3.0", "1.10.0"]),
    (">= 1.0.0, < 1.3", ["1.0.0", "1.2.0", "1.2.7"]),
    (">1.2", ["1.3.0", "1.10.0", "2.0.0", "v2.1.0"]),
    ("<=0.2", ["0.1.0", "0.2.3", "0.2.9"]),
    ("!=1.x", ["0.1.0", "0.2.3", "0.2.9", "0.3.0", "2.0.0", "v2.1.0"]),
    ("0.2 - 0.3", ["0.2.3", "0.2.9", "0.3.0"]),
    ("<0.2 || >=2.1", ["0.1.0", "v2.1.0"]),
    ("1.3.0-rc.1", ["1.3.0-rc.1"]),
    (">=1.3.0-rc.0 <1.4", ["1.3.0-rc.1", "1.3.0"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_constraints_choose_versions_as_helm_does(constraint: str, allowed: list[str]) -> None:
    parsed = parse_constraint(constraint)
    assert [v for v in VERSIONS if parsed.allows(v)] == allowed


def test_the_highest_allowed_version_wins_numerically_and_a_release_beats_its_prerelease() -> None:
    assert highest(VERSIONS, parse_constraint("1.*")) == "1.10.0"
    assert highest(["2.0.0-rc.1", "2.0.0"], parse_constraint(">=2.0.0-rc.0")) == "2.0.0"
    assert highest(["1.0.0-rc.2", "1.0.0-rc.10"], parse_constraint(">=1.0.0-rc.0")) == "1.0.0-rc.10"
    assert highest(VERSIONS, parse_constraint(">=9")) is None
    assert parse_version("1.2.3+build.5") == parse_version("1.2.3")
    assert parse_version("latest") is None


@pytest.mark.parametrize("text", ["1.2.3.4", ">>1", "1.2 ||", "abc", "^", "1.2.3 - "])
def test_what_is_neither_a_version_nor_a_constraint_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(ConstraintError, match=r"is no version|is not a version|empty alternative"):
        parse_constraint(text)


@pytest.mark.parametrize(("repo_url", "chart", "oci", "registry", "repository"), [
    ("oci://ghcr.io/acme/charts", "redis", True, "ghcr.io", "acme/charts/redis"),
    ("oci://127.0.0.1:5000", "web", True, "127.0.0.1:5000", "web"),
    ("registry.example.com/team/", "api", True, "registry.example.com", "team/api"),
    ("OCI://Registry.Example.com/x", "api", True, "registry.example.com", "x/api"),
    ("oci://[::1]:5000/charts", "web", True, "[::1]:5000", "charts/web"),
])
def test_an_oci_chart_source_names_a_registry_and_a_repository(repo_url: str, chart: str, oci: bool, registry: str,
                                                               repository: str) -> None:
    assert is_oci(repo_url, chart) is oci
    ref = parse_reference(repo_url, chart)
    assert (ref.registry, ref.repository) == (registry, repository)
    assert ref.url == f"oci://{registry}/{repository}"


@pytest.mark.parametrize(("repo_url", "chart", "problem"), [
    ("oci://user:pw@ghcr.io/x", "redis", "no credentials in it"),
    ("oci://ghcr.io/Acme", "redis", "is not an OCI repository name"),
    ("oci://ghcr.io/acme", "redis:1.0", "the version goes in targetRevision"),
    ("oci://bad_host!/x", "redis", "is not a registry host"),
    ("ghcr.io/acme", "../redis", "is not an OCI repository name"),
])
def test_a_malformed_oci_source_is_refused_naming_what_is_wrong(repo_url: str, chart: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_reference(repo_url, chart)


def test_http_repositories_are_not_oci_and_tags_carry_build_metadata_with_underscores() -> None:
    assert not is_oci("https://charts.example", "redis") and not is_oci("http://127.0.0.1:8000", "redis")
    assert not is_oci("oci://ghcr.io/x", "")
    assert tag_of("1.2.3+build.1") == "1.2.3_build.1" and version_of("1.2.3_build.1") == "1.2.3+build.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("registry.example") and not is_loopback("localhost.evil")


@pytest.mark.parametrize(("url", "repo_url", "sent"), [
    ("https://charts.example/team/index.yaml", "https://charts.example/team", True),
    ("https://charts.example/team/lib-0.1.0.tgz", "https://charts.example/team/", True),
    ("https://charts.example/teamb/index.yaml", "https://charts.example/team", False),
    ("https://cdn.example/team/lib-0.1.0.tgz", "https://charts.example/team", False),
    ("https://charts.example:8443/team/x.tgz", "https://charts.example/team", False),
    ("http://charts.example/team/x.tgz", "https://charts.example/team", False),
    ("https://charts.example/team/x.tgz", "", False),
], ids=["index", "archive", "sibling-path", "other-host", "other-port", "downgrade", "no-repo"])
def test_a_chart_repository_login_goes_only_to_urls_under_the_repository(url: str, repo_url: str,
                                                                         sent: bool) -> None:
    assert under(url, repo_url) is sent


def test_a_login_is_basic_auth_and_a_token_alone_a_bearer_token() -> None:
    assert login_header(Credentials(username="u", token="p")) == "Basic dTpw"
    assert login_header(Credentials(token="t0k")) == "Bearer t0k"
    assert login_header(Credentials(ca="-----BEGIN CERTIFICATE-----")) == ""

"""Which renderer, with which arguments: Argo CD's source fields, decided without I/O (``reconciler.sources``)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.chartsource import _validator as chart_validator
from reconciler.chartsource import matches, version_key
from reconciler.sources import (
    DirectoryOptions,
    HelmOptions,
    KustomizeOptions,
    check_kustomizations,
    detect,
    helm_args,
    jsonnet_args,
    jsonnet_objects,
    kustomize_overlay,
    parse_options,
    select,
)


def options(**source: Any) -> Any:
    problems: list[str] = []
    parsed = parse_options(source, problems)
    assert problems == []
    return parsed


@pytest.mark.parametrize(("paths", "source", "kind"), [
    (["app/kustomization.yaml", "app/d.yaml"], {}, "kustomize"),
    (["app/kustomization.yml"], {}, "kustomize"),
    (["app/Kustomization"], {}, "kustomize"),
    (["app/Chart.yaml", "app/templates/d.yaml"], {}, "helm"),
    (["app/main.jsonnet", "app/d.yaml"], {}, "jsonnet"),
    (["app/sub/main.jsonnet", "app/d.yaml"], {}, "plain"),  # not recursive: a deeper .jsonnet is not evaluated
    (["app/d.yaml", "app/sub/kustomization.yaml"], {}, "plain"),  # only the path itself decides
    (["app/kustomization.yaml"], {"directory": {}}, "plain"),  # an explicit field wins, as in Argo CD
    (["app/d.yaml"], {"helm": {}}, "helm"),
    (["app/main.jsonnet"], {"directory": {"exclude": "*.jsonnet"}}, "plain"),
])
def test_detect_chooses_as_argo_cd_does(paths: list[str], source: dict[str, Any], kind: str) -> None:
    assert detect(paths, "app", options(**source)) == kind


def test_select_names_what_is_not_rendered_and_why() -> None:
    paths = ["app/a.yaml", "app/b.json", "app/README.md", "app/lib.libsonnet", "app/main.jsonnet", "app/.ci.yaml",
             "app/sub/c.yaml", "app/sub/kustomization.yaml"]
    chosen = select(paths, "app", DirectoryOptions())
    assert chosen.manifests == ("app/a.yaml", "app/b.json")
    assert chosen.jsonnet == ("app/main.jsonnet",)
    assert chosen.unrendered == ("app/README.md",)
    assert chosen.deeper == ("app/sub/c.yaml",)
    assert chosen.nested_kustomizations == ("app/sub/kustomization.yaml",)
    deep = select(paths, "app", DirectoryOptions(recurse=True, include="{*.yaml,*.json}", exclude="b.*"))
    assert deep.manifests == ("app/a.yaml", "app/sub/c.yaml") and deep.deeper == ()


def test_chart_sources_from_oci_registries_and_with_credentials_are_accepted() -> None:
    assert options(repoURL="oci://registry.example/charts", chart="redis").chart == "redis"
    assert options(repoURL="registry.example/charts", chart="redis").chart == "redis"  # Argo CD's form
    assert options(repoURL="https://charts.example", chart="redis", secretRef={"name": "x"}).chart == "redis"


@pytest.mark.parametrize(("source", "problem"), [
    ({"helm": {}, "kustomize": {}}, "spec.source: kustomize and helm exclude each other"),
    ({"helm": {"releaseName": "Not_Valid"}}, "spec.source.helm.releaseName 'Not_Valid' is not a valid release name"),
    ({"helm": {"values": "a: 1", "valuesObject": {"a": 1}}}, "values and valuesObject exclude each other"),
    ({"helm": {"valueFiles": ["/etc/passwd"]}}, "'/etc/passwd' must be a path inside the repository"),
    ({"helm": {"parameters": [{"value": "x"}]}}, "spec.source.helm.parameters[0] needs a name"),
    ({"kustomize": {"images": "nginx"}}, "spec.source.kustomize.images must be a list of strings"),
    ({"kustomize": {"version": "v5.0.0"}}, "spec.source.kustomize.version is not supported"),
    ({"kustomize": {"patches": [{"target": {"kind": "Deployment"}}]}}, "patches[0] needs a patch or a path"),
    ({"kustomize": {"replicas": [{"name": "web", "count": "3"}]}}, "replicas[0] needs a name and a count"),
    ({"directory": {"jsonnet": {"tlas": "x"}}}, "spec.source.directory.jsonnet.tlas must be a list"),
])
def test_bad_fields_are_problems_naming_the_field(source: dict[str, Any], problem: str) -> None:
    problems: list[str] = []
    parse_options(source, problems)
    assert any(problem in p for p in problems), problems


def test_the_cache_key_changes_with_any_render_field() -> None:
    keys = {options().key, options(helm={"valuesObject": {"a": 1}}).key, options(helm={"valuesObject": {"a": 2}}).key,
            options(directory={"recurse": True}).key}
    assert len(keys) == 4


@pytest.mark.parametrize(("image", "expected"), [
    ("nginx:1.27", {"name": "nginx", "newTag": "1.27"}),
    ("nginx=registry.example:5000/nginx:2.0", {"name": "nginx", "newName": "registry.example:5000/nginx",
                                              "newTag": "2.0"}),
    ("nginx@sha256:abc", {"name": "nginx", "digest": "sha256:abc"}),
    ("registry.example:5000/app", {"name": "registry.example:5000/app"}),
])
def test_kustomize_images_follow_argo_cds_forms(image: str, expected: dict[str, str]) -> None:
    overlay = kustomize_overlay(KustomizeOptions(images=(image,)), "../app")
    assert overlay is not None and overlay["images"] == [expected]


def test_no_kustomize_options_no_overlay() -> None:
    assert kustomize_overlay(KustomizeOptions(), "../app") is None


def test_helm_args_are_offline_argv_with_hooks() -> None:
    helm = HelmOptions(release_name="shop", value_files=("v1.yaml", "missing.yaml"), parameters=(
        ("image", "nginx:1.27", False), ("team", "42", True)), file_parameters=(("cert", "files/c.pem"),),
        skip_crds=True, ignore_missing_value_files=True)
    assert helm_args("app", ".", "prod", helm, values_file="/tmp/v.yaml", present=["v1.yaml"]) == [
        "template", "shop", ".", "--namespace", "prod", "--skip-crds", "--values", "v1.yaml",
        "--values", "/tmp/v.yaml", "--set", "image=nginx:1.27", "--set-string", "team=42",
        "--set-file", "cert=files/c.pem"]
    assert "--include-crds" in helm_args("app", ".", "", HelmOptions(), values_file=None, present=[])


def test_jsonnet_args_and_outputs() -> None:
    d = DirectoryOptions(tlas=(("color", "blue", False), ("n", "2", True)), ext_vars=(("env", "prod", False),))
    assert jsonnet_args("main.jsonnet", d, ["/lib"]) == [
        "--jpath", "/lib", "--tla-str", "color=blue", "--tla-code", "n=2", "--ext-str", "env=prod", "main.jsonnet"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap"}
    assert jsonnet_objects([cm, [cm]], "m") == [cm, cm]
    assert jsonnet_objects({"kind": "List", "items": [cm]}, "m") == [cm]
    with pytest.raises(ValueError, match="m: evaluates to an object that is no Kubernetes object"):
        jsonnet_objects({"a": cm}, "m")
    with pytest.raises(ValueError, match="m: evaluates to str"):
        jsonnet_objects("x", "m")


@pytest.mark.parametrize(("text", "problem"), [
    (b"resources: [d.yaml, ../base]\n", ""),
    (b"resources:\n- ../../outside\n",
     "app/kustomization.yaml:2: resources entry '../../outside' leaves the repository"),
    (b"resources:\n- https://github.com/o/r//base?ref=v1\n", "is remote; driftguard renders offline"),
    (b"resources:\n- github.com/o/r/base?ref=v1\n", "is remote"),
    (b"components: [/etc]\n", "components entry '/etc' leaves the repository"),
    (b"resources: [\n", "app/kustomization.yaml: not YAML"),
])
def test_kustomizations_are_checked_before_kustomize_runs(text: bytes, problem: str) -> None:
    found = check_kustomizations({"app/kustomization.yaml": text, "app/d.yaml": b"kind: x\n"})
    assert (problem in found) if problem else found == ""


def test_kustomize_patches_components_and_replicas_are_relative_to_the_source_path() -> None:
    k = options(kustomize={"components": ["../../components/x"], "replicas": [{"name": "web", "count": 3}],
                           "patches": [{"path": "p.yaml"}, {"patch": "- op: remove", "target": {"kind": "Service"}}]})
    overlay = kustomize_overlay(k.kustomize, "../overlays/prod")
    assert overlay is not None
    assert overlay["components"] == ["../components/x"]
    assert overlay["replicas"] == [{"name": "web", "count": 3}]
    assert overlay["patches"] == [{"path": "../overlays/prod/p.yaml"},
                                  {"patch": "- op: remove", "target": {"kind": "Service"}}]


@pytest.mark.parametrize(("version", "target", "chosen"), [
    ("1.2.3", "1.2.3", True), ("v1.2.3", "1.2.3", True), ("1.2.4", "1.2.3", False),
    ("1.2.9", "1.2.*", True), ("1.3.0", "1.2.*", False), ("1.9.0", "1.x", True), ("2.0.0", "1.x", False),
    ("2.0.0", "*", True), ("2.0.0-rc.1", "*", False), ("2.0.0-rc.1", "2.0.0-rc.1", True),
    ("1.4.0", "^1.2", True), ("2.0.0", "^1.2", False), ("1.5.0", ">=1.2.0 <2.0.0", True),
    ("1.0.0", "not a version", False),
])
def test_chart_versions_match_as_argo_cd_targets_them(version: str, target: str, chosen: bool) -> None:
    assert matches(version, target) is chosen


def test_the_highest_matching_chart_version_wins_and_releases_beat_prereleases() -> None:
    assert max(["1.2.0", "1.10.0", "1.9.9"], key=version_key) == "1.10.0"
    assert version_key("2.0.0") > version_key("2.0.0-rc.1")


@pytest.mark.parametrize(("source", "problem"), [
    ({"repoURL": "ssh://git.example/charts", "chart": "redis"}, "must be an http(s) Helm repository or an OCI"),
    ({"repoURL": "oci://registry.example/Charts", "chart": "redis"}, "is not an OCI repository name"),
    ({"repoURL": "https://charts.example", "chart": "redis", "path": "x"}, "takes only helm options"),
    ({"repoURL": "https://git.example", "plugin": {"name": "x"}}, "spec.source.plugin is not supported"),
])
def test_chart_sources_refuse_what_is_not_supported(source: dict[str, Any], problem: str) -> None:
    problems: list[str] = []
    parse_options(source, problems)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(("headers", "validator"), [
    ({"ETag": '"abc"', "Last-Modified": "Thu, 03 Dec 2026 08:00:00 GMT"}, '"abc"'),
    ({"Last-Modified": "Thu, 03 Dec 2026 08:00:00 GMT", "Date": "Thu, 03 Dec 2026 08:00:10 GMT"},
     "Thu, 03 Dec 2026 08:00:00 GMT"),
    ({"Last-Modified": "Thu, 03 Dec 2026 08:00:00 GMT", "Date": "Thu, 03 Dec 2026 08:00:01 GMT"}, ""),
    ({"Last-Modified": "Thu, 03 Dec 2026 08:00:00 GMT"}, ""),
    ({"Last-Modified": "garbage", "Date": "also garbage"}, ""),
], ids=["etag", "old-enough", "maybe-mid-write", "no-date", "unreadable"])
def test_an_index_validator_is_kept_only_when_it_cannot_hide_a_later_write(headers: dict[str, str],
                                                                           validator: str) -> None:
    assert chart_validator(headers) == validator


@pytest.mark.parametrize(("path", "root", "rendered"), [
    ("app/a.yaml", "app", True),
    ("app/sub/dir/b.yml", "app", True),
    ("app/c.json", "app", True),
    ("app/README.md", "app", False),
    ("app/script.sh", "app", False),
    ("app/.github/workflows/ci.yaml", "app", False),
    ("app/.hidden.yaml", "app", False),
    ("app/kustomization.yaml", "app", False),
    ("app/sub/kustomization.yml", "app", False),
    ("app/Kustomization", "app", False),
    (".config/x.yaml", "", False),
    ("x.yaml", "", True),
    ("app.d/x.yaml", "app", True),  # "app.d" is not under "app"; its own name is not hidden
])
def test_which_files_are_rendered(path: str, root: str, rendered: bool) -> None:
    """With recurse on, hidden files and kustomizations are never manifests; other suffixes are not either."""
    assert (path in select([path], root, DirectoryOptions(recurse=True)).manifests) is rendered

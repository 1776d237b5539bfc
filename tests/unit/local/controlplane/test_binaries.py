"""Which control-plane binaries are used, and what happens when there are none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftguard.local.controlplane.binaries import (
    KUBERNETES_VERSION,
    NODE_BINARIES,
    BinariesUnavailable,
    cache_dir,
    resolve_binaries,
    resolve_node_binaries,
)


def _fake_binaries(directory: Path, names: tuple[str, ...] = ("kube-apiserver", "etcd", "kubectl")) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return directory


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with an empty cache and no `go` on PATH."""
    empty_path = tmp_path / "empty-path"
    empty_path.mkdir()
    return {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": str(empty_path)}


def test_cache_dir_is_keyed_by_version(env: dict[str, str]) -> None:
    assert cache_dir(env) == Path(env["XDG_CACHE_HOME"]) / "driftguard" / f"bin-v{KUBERNETES_VERSION}"
    del env["XDG_CACHE_HOME"]
    assert cache_dir(env) == Path(env["HOME"]) / ".cache" / "driftguard" / f"bin-v{KUBERNETES_VERSION}"


@pytest.mark.parametrize("variable", ["DRIFTGUARD_BIN_DIR", "KUBEBUILDER_ASSETS"])
def test_explicit_directory_wins_over_the_cache(env: dict[str, str], tmp_path: Path, variable: str) -> None:
    _fake_binaries(cache_dir(env))
    explicit = _fake_binaries(tmp_path / "assets", ("kube-apiserver", "etcd"))
    binaries = resolve_binaries(env={**env, variable: str(explicit)})
    assert binaries.kube_apiserver == explicit / "kube-apiserver"
    assert binaries.kubectl is None
    assert binaries.source == variable


def test_driftguard_bin_dir_wins_over_kubebuilder_assets(env: dict[str, str], tmp_path: Path) -> None:
    ours = _fake_binaries(tmp_path / "ours")
    theirs = _fake_binaries(tmp_path / "theirs")
    binaries = resolve_binaries(env={**env, "DRIFTGUARD_BIN_DIR": str(ours), "KUBEBUILDER_ASSETS": str(theirs)})
    assert binaries.etcd == ours / "etcd"


def test_a_broken_explicit_directory_is_an_error_not_a_fallback(env: dict[str, str], tmp_path: Path) -> None:
    _fake_binaries(cache_dir(env))
    broken = _fake_binaries(tmp_path / "broken", ("kube-apiserver",))
    with pytest.raises(BinariesUnavailable, match=r"DRIFTGUARD_BIN_DIR=.*missing executable etcd"):
        resolve_binaries(env={**env, "DRIFTGUARD_BIN_DIR": str(broken)})


def test_complete_cache_is_used_without_building(env: dict[str, str]) -> None:
    cached = _fake_binaries(cache_dir(env))
    binaries = resolve_binaries(env=env)
    assert (binaries.kube_apiserver, binaries.kubectl, binaries.source) == (
        cached / "kube-apiserver",
        cached / "kubectl",
        "cache",
    )


def test_non_executable_files_do_not_count(env: dict[str, str]) -> None:
    cached = _fake_binaries(cache_dir(env))
    (cached / "etcd").chmod(0o644)
    with pytest.raises(BinariesUnavailable):
        resolve_binaries(env=env, build=False)


def test_no_go_and_no_binaries_says_what_to_do(env: dict[str, str]) -> None:
    with pytest.raises(BinariesUnavailable) as caught:
        resolve_binaries(env=env)
    message = str(caught.value)
    assert "no `go` on PATH" in message
    assert "DRIFTGUARD_BIN_DIR" in message and "KUBEBUILDER_ASSETS" in message
    assert str(cache_dir(env)) in message
    assert not cache_dir(env).exists() or not os.listdir(cache_dir(env))


def test_node_binaries_come_from_the_cache_when_all_are_there(env: dict[str, str]) -> None:
    names = ("kube-apiserver", "etcd", "kubectl", *NODE_BINARIES)
    cache = _fake_binaries(cache_dir(env), names)
    assert resolve_node_binaries(env=env) == {name: cache / name for name in names}


def test_node_binaries_missing_without_go_say_how_to_get_them(env: dict[str, str]) -> None:
    _fake_binaries(cache_dir(env))
    with pytest.raises(BinariesUnavailable, match="no `go` on PATH"):
        resolve_node_binaries(env=env)


def test_node_binaries_from_an_explicit_directory_must_be_complete(env: dict[str, str], tmp_path: Path) -> None:
    explicit = _fake_binaries(tmp_path / "explicit")
    with pytest.raises(BinariesUnavailable, match="missing executable kube-controller-manager"):
        resolve_node_binaries(env={**env, "DRIFTGUARD_BIN_DIR": str(explicit)})

"""The driftguard image, built from the repository's own Dockerfile without a daemon or a registry.

``buildah`` (Debian's package) builds the Dockerfile unchanged, with ``BASE_IMAGE`` set to a Python
base made here from Debian packages (``mmdebstrap``: python3, python3-venv, apt) because no registry
is reachable; users keep the Dockerfile's default, the official ``python:3.11-slim``. The result is
exported as a docker archive tagged ``driftguard:dev`` — the name the manifests use — and imported
into the cluster's containerd, where kubelet finds it (``imagePullPolicy: IfNotPresent``).

buildah's storage lives in the driftguard cache (``~/.cache/driftguard/buildah``), not in
/var/lib/containers, so the host keeps no trace beyond that cache, and ``--layers`` makes a rebuild
after a code change take seconds.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from driftguard.local.cluster import host
from driftguard.local.controlplane.binaries import cache_dir, stage_render_tools

log = logging.getLogger(__name__)

IMAGE = "driftguard:dev"
LOCAL_BASE = "localhost/driftguard-python-base:3.11-bookworm"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "passwd", "ca-certificates", "apt")
EXTRA_CA_DIR = "/usr/local/share/ca-certificates"
CONTAINERS_CACHE = "/var/lib/containers"  # containers/image's blob-info cache, not configurable from the CLI
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # pip's own certifi bundle would ignore EXTRA_CA_DIR

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    """The image could not be built or exported."""


def storage_dir() -> Path:
    return cache_dir().parent / "buildah"


def repository_root() -> Path:
    return Path(__file__).resolve().parents[3]


def build(
    destination: Path,
    *,
    context: Path | None = None,
    base: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Build the Dockerfile in ``context`` (default: this checkout) and write ``destination``, a docker
    archive of ``driftguard:dev``. ``base`` is the BASE_IMAGE; None builds (once) and uses a local one."""
    say = progress or log.info
    for tool in ("buildah", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise ImageError(f"`{tool}` is missing: apt-get install buildah mmdebstrap")
    context = context or repository_root()
    if not (context / "Dockerfile").is_file():
        raise ImageError(f"{context}: no Dockerfile")
    storage_dir().mkdir(parents=True, exist_ok=True)
    with (storage_dir() / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time: the cleanup below is storage-wide
        created_cache = not os.path.lexists(CONTAINERS_CACHE)
        try:
            return _build(destination, context, base, say)
        finally:
            # no trace outside the driftguard cache: no working containers, no mounts, no blob-info cache
            _buildah("rm", "--all", check=False)
            host.unmount_under([str(storage_dir())])
            if created_cache:
                shutil.rmtree(CONTAINERS_CACHE, ignore_errors=True)


def _build(destination: Path, context: Path, base: str | None, say: Progress) -> Path:
    if base is None:
        base = LOCAL_BASE
        if not _exists(base):
            _build_local_base(say)
    started = time.monotonic()
    stage_render_tools(context / ".render-tools")
    say(f"building {IMAGE} from {context / 'Dockerfile'} (BASE_IMAGE={base})…")
    log_file = destination.parent / "image-build.log"
    destination.parent.mkdir(parents=True, exist_ok=True)
    _buildah(
        "bud", "--layers", "--isolation", "chroot", "--pull-never", "--build-arg", f"BASE_IMAGE={base}",
        "--tag", IMAGE, "--file", str(context / "Dockerfile"), str(context),
        log_file=log_file,
    )
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    _buildah("push", IMAGE, f"docker-archive:{partial}:{IMAGE}", log_file=log_file)
    partial.replace(destination)
    say(f"built {IMAGE} in {time.monotonic() - started:.0f}s → {destination}")
    return destination


def _build_local_base(say: Progress) -> None:
    """A Debian bookworm root filesystem with Python 3.11 (python3, python3-venv) and apt, as an image."""
    started = time.monotonic()
    say(f"building the Python base {LOCAL_BASE} from Debian packages (mmdebstrap, once)…")
    with tempfile.TemporaryDirectory(prefix="driftguard-base-") as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        _run(
            [
                "mmdebstrap", "--variant=apt", f"--include={','.join(BASE_PACKAGES)}",
                "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                # The CAs this machine trusts beyond Debian's (a TLS-inspecting egress proxy, say), so
                # pip and git inside the build reach what the host reaches.
                f"--customize-hook=copy-in {EXTRA_CA_DIR} /usr/local/share",
                '--customize-hook=chroot "$1" update-ca-certificates --fresh',
                SUITE, str(tarball),
            ],
            storage_dir() / "mmdebstrap.log",
        )
        container = _buildah("from", "scratch").strip()
        try:
            _buildah("add", container, str(tarball), "/")
            _buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "--env", f"PIP_CERT={SYSTEM_CA_BUNDLE}", "--cmd", "python3", container)
            _buildah("commit", "--rm", container, LOCAL_BASE)
        except BaseException:
            _buildah("rm", container, check=False)
            raise
    say(f"built {LOCAL_BASE} in {time.monotonic() - started:.0f}s")


def _exists(image: str) -> bool:
    return _buildah("inspect", "--type", "image", image, check=False) != ""


def _buildah(*args: str, log_file: Path | None = None, check: bool = True) -> str:
    storage = storage_dir()
    argv = ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", "overlay", "--storage-opt", "overlay.skip_mount_home=true", *args]
    if log_file is not None:
        _run(argv, log_file)
        return ""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=_env())
    if result.returncode != 0:
        if check:
            raise ImageError(f"{' '.join(argv)} failed: {result.stderr.strip()[-2000:]}")
        return ""
    return result.stdout


def _run(argv: Sequence[str], log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as output:
        result = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                check=False, env=_env())
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise ImageError(f"{argv[0]} {argv[1]} failed (exit {result.returncode}; log {log_file}):\n{tail}")


def _env() -> dict[str, str]:
    return {**os.environ, "BUILDAH_ISOLATION": "chroot"}

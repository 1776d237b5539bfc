"""Apply order as a table: definitions and namespaces first, webhooks last; prune in reverse."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, TypeVar

from driftguard.core.objects import ObjectRef

T = TypeVar("T")

_RANKS: Final[dict[str, int]] = {
    "CustomResourceDefinition.apiextensions.k8s.io": 0,
    "Namespace": 1,
    "ResourceQuota": 2, "LimitRange": 2, "PriorityClass.scheduling.k8s.io": 2, "StorageClass.storage.k8s.io": 2,
    "ServiceAccount": 3, "ClusterRole.rbac.authorization.k8s.io": 3, "Role.rbac.authorization.k8s.io": 3,
    "ClusterRoleBinding.rbac.authorization.k8s.io": 4, "RoleBinding.rbac.authorization.k8s.io": 4,
    "Secret": 5, "ConfigMap": 5, "PersistentVolume": 6, "PersistentVolumeClaim": 7,
    "Service": 8,
    "APIService.apiregistration.k8s.io": 90,
    "MutatingWebhookConfiguration.admissionregistration.k8s.io": 100,
    "ValidatingWebhookConfiguration.admissionregistration.k8s.io": 100,
    "ValidatingAdmissionPolicy.admissionregistration.k8s.io": 100,
    "ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io": 101,
}
DEFAULT_RANK: Final = 50


def rank(ref: ObjectRef) -> int:
    return _RANKS.get(ref.group_kind, DEFAULT_RANK)


def for_apply(items: Iterable[T], ref: Callable[[T], ObjectRef]) -> list[T]:
    return sorted(items, key=lambda item: (rank(ref(item)), ref(item)))


def for_prune(items: Iterable[T], ref: Callable[[T], ObjectRef]) -> list[T]:
    return list(reversed(for_apply(items, ref)))

"""deploy/k8s: every overlay renders with `kubectl kustomize`; core resources validate against the
Kubernetes schemas (kubernetes-validate, strict); CRDs (ServiceMonitor, ScaledObject,
TriggerAuthentication, PrometheusRule) are checked for their required structure here."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

Run = Callable[..., subprocess.CompletedProcess[str]]
Resources = list[dict[str, Any]]

KUBERNETES_VERSION = "1.30"
OVERLAYS = ("dev", "production")
CORE_KINDS = {"Deployment", "Service", "Job", "ConfigMap", "PodDisruptionBudget", "Namespace"}
KEDA_QUEUES = {"executor": "executor.runs", "browser-pool": "browser-pool.tasks"}
NAMESPACES = {"dev": "automation-dev", "production": "automation"}


def render(kubectl: str, run: Run, path: str) -> Resources:
    """``kubectl kustomize <path>``'s resources (the test fails with kustomize's error)."""
    result = run(kubectl, "kustomize", path)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    resources = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert resources, f"{path} rendered nothing"
    return resources


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, kubectl: str, run: Run) -> tuple[str, Resources]:
    """(overlay name, rendered resources), rendered once per overlay."""
    name: str = request.param
    return name, render(kubectl, run, f"deploy/k8s/overlays/{name}")


def of_kind(resources: Resources, kind: str) -> dict[str, dict[str, Any]]:
    """Resources of one kind by metadata.name."""
    return {doc["metadata"]["name"]: doc for doc in resources if doc["kind"] == kind}


def test_core_resources_validate(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    core = [doc for doc in resources if doc["kind"] in CORE_KINDS]
    assert {doc["kind"] for doc in core} == CORE_KINDS
    failures = []
    for doc in core:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


def test_every_kind_is_known(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    crds = {"ServiceMonitor", "ScaledObject", "TriggerAuthentication", "PrometheusRule"}
    assert {doc["kind"] for doc in resources} == CORE_KINDS | crds
    assert not of_kind(resources, "Secret"), "secrets are created in the cluster, never kept in the repo"


def test_everything_lands_in_the_overlay_namespace(overlay: tuple[str, Resources]) -> None:
    name, resources = overlay
    namespace = NAMESPACES[name]
    assert list(of_kind(resources, "Namespace")) == [namespace]
    for doc in resources:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']}/{doc['metadata']['name']}"


def test_each_service_has_its_deployment(overlay: tuple[str, Resources], app_services: dict[str, int]) -> None:
    _, resources = overlay
    deployments = of_kind(resources, "Deployment")
    assert set(deployments) == set(app_services)
    for name, port in app_services.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["image"].startswith(f"automation/{name}:"), "overlays pin the image tag"
        assert container["args"] == ["serve"]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert {"configMapRef", "secretRef"} == {key for ref in container["envFrom"] for key in ref}
        assert {"secretRef": {"name": "automation-secrets"}} in container["envFrom"]
        assert {"name": "AUTOMATION_HTTP_PORT", "value": str(port)} in container["env"]


def test_each_service_has_service_pdb_monitor_and_migration(
    overlay: tuple[str, Resources], app_services: dict[str, int]
) -> None:
    _, resources = overlay
    services = of_kind(resources, "Service")
    budgets = of_kind(resources, "PodDisruptionBudget")
    monitors = of_kind(resources, "ServiceMonitor")
    jobs = of_kind(resources, "Job")
    deployments = of_kind(resources, "Deployment")
    for name, port in app_services.items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= pod_labels.items()
        assert services[name]["spec"]["ports"][0]["port"] == port
        assert budgets[name]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

        monitor = monitors[name]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["selector"]["matchLabels"].items() <= services[name]["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"] == [
            {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
        ]
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"

        job = jobs[f"{name}-migrate"]
        job_pod = job["spec"]["template"]["spec"]
        (container,) = job_pod["containers"]
        assert container["args"] == ["migrate"]
        assert container["image"] == deployments[name]["spec"]["template"]["spec"]["containers"][0]["image"]
        assert job_pod["restartPolicy"] == "Never"
        assert job_pod["securityContext"]["runAsNonRoot"] is True
        assert not selector.items() <= job["spec"]["template"]["metadata"]["labels"].items(), (
            "the Service must not route to migration pods"
        )


def test_workers_scale_with_keda(overlay: tuple[str, Resources]) -> None:
    _, resources = overlay
    scaled = of_kind(resources, "ScaledObject")
    auths = of_kind(resources, "TriggerAuthentication")
    assert set(scaled) == set(KEDA_QUEUES)
    (auth,) = auths.values()
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "automation-secrets", "key": "AUTOMATION_AMQP_URL"}
    ]
    deployments = of_kind(resources, "Deployment")
    for name, queue in KEDA_QUEUES.items():
        spec = scaled[name]["spec"]
        assert scaled[name]["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == queue
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert isinstance(trigger["metadata"]["value"], str), "KEDA trigger metadata values are strings"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert "host" not in trigger["metadata"], "the broker URL comes from the TriggerAuthentication"
        assert "replicas" not in deployments[name]["spec"], "KEDA owns the replica count"


def test_prometheus_rule_matches_the_rules_file(overlay: tuple[str, Resources], repo_root: Path) -> None:
    _, resources = overlay
    (rule,) = of_kind(resources, "PrometheusRule").values()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules_file = yaml.safe_load((repo_root / "deploy/prometheus/rules/automation.rules.yml").read_text())
    assert rule["spec"]["groups"] == rules_file["groups"], (
        "deploy/k8s/base/monitoring/prometheusrule.yaml drifted from deploy/prometheus/rules/automation.rules.yml"
    )


def test_production_runs_several_replicas(kubectl: str, run: Run) -> None:
    resources = render(kubectl, run, "deploy/k8s/overlays/production")
    for name, deployment in of_kind(resources, "Deployment").items():
        if name not in KEDA_QUEUES:
            assert deployment["spec"]["replicas"] >= 2, name
    for scaled in of_kind(resources, "ScaledObject").values():
        assert scaled["spec"]["minReplicaCount"] >= 2


def test_migration_step_selects_everything_the_jobs_need(overlay: tuple[str, Resources]) -> None:
    """The upgrade's first step applies `-l 'app.kubernetes.io/component in (config,migration)'`."""
    _, resources = overlay
    selected = {
        (doc["kind"], doc["metadata"]["name"])
        for doc in resources
        if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") in {"config", "migration"}
    }
    jobs = of_kind(resources, "Job")
    assert {("Job", name) for name in jobs} <= selected
    for job in jobs.values():
        (container,) = job["spec"]["template"]["spec"]["containers"]
        for ref in container["envFrom"]:
            if "configMapRef" in ref:
                assert ("ConfigMap", ref["configMapRef"]["name"]) in selected
    (config,) = of_kind(resources, "ConfigMap").values()
    assert config["data"]["AUTOMATION_MIGRATE_ON_START"] == "false", "serving pods must not migrate"
    assert config["data"]["AUTOMATION_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", OVERLAYS)
def test_the_in_memory_working_directories_component_applies_to_each_overlay(
    name: str, kubectl: str, run: Run, repo_root: Path, tmp_path: Path
) -> None:
    """deploy/k8s/components/executor-workdirs-in-memory, used as its header says, from an overlay."""
    overlay_dir = tmp_path / "overlay"
    overlay_dir.mkdir()
    (overlay_dir / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(repo_root / f"deploy/k8s/overlays/{name}", overlay_dir)],
                "components": [
                    os.path.relpath(repo_root / "deploy/k8s/components/executor-workdirs-in-memory", overlay_dir)
                ],
            }
        )
    )
    resources = render(kubectl, run, str(overlay_dir))
    executor = of_kind(resources, "Deployment")["executor"]
    kubernetes_validate.validate(executor, KUBERNETES_VERSION, strict=True)
    pod = executor["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["work"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert "medium" not in volumes["tmp"]["emptyDir"], "/tmp stays on the node's disk"
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["work"] == "/var/lib/automation/work"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["AUTOMATION_EXECUTOR_WORKDIR_ROOT"] == mounts["work"]
    # The rest of the overlay is as it was.
    others = render(kubectl, run, f"deploy/k8s/overlays/{name}")
    assert [doc for doc in resources if doc is not executor] == [
        doc for doc in others if not (doc["kind"] == "Deployment" and doc["metadata"]["name"] == "executor")
    ]

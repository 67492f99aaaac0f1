"""docker-compose.yml: valid against the Compose Specification, healthchecks everywhere, the five
services built from deploy/docker/Dockerfile's targets, and no secret with a default value."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

SCHEMA_NAME = Path("schemas") / "compose-spec.json"
PUBLISHED = {"job-api", "event-gateway"}  # the API and the event ingress; the rest stay internal
SECRET_VARIABLES = ("AUTOMATION_JWT_SECRET", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def locate_compose_spec(repo_root: Path) -> Path:
    """``$AUTOMATION_SHARED_DIR/schemas/compose-spec.json``, else the nearest ``shared/`` found
    walking up from the repository root (a sibling of the checkout); fails the test if neither."""
    tried: list[Path] = []
    shared_dir = os.environ.get("AUTOMATION_SHARED_DIR")
    if shared_dir:
        tried.append(Path(shared_dir) / SCHEMA_NAME)
    tried.extend(folder / "shared" / SCHEMA_NAME for folder in (repo_root, *repo_root.parents))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    pytest.fail(
        "compose-spec.json not found; set AUTOMATION_SHARED_DIR to the shared/ folder. Tried: "
        + ", ".join(str(path) for path in tried),
        pytrace=False,
    )


@pytest.fixture(scope="module")
def compose(repo_root: Path) -> dict[str, Any]:
    """docker-compose.yml, parsed (anchors and merge keys resolved)."""
    loaded = yaml.safe_load((repo_root / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def dockerfile_targets(dockerfile: Path) -> set[str]:
    """Names of the build stages (``FROM ... AS name``) of a Dockerfile."""
    pattern = re.compile(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)
    return set(pattern.findall(dockerfile.read_text()))


def spec_errors(repo_root: Path, document: dict[str, Any]) -> list[str]:
    """Where a Compose file breaks the Compose Specification, one line each."""
    schema = json.loads(locate_compose_spec(repo_root).read_text())
    # The spec declares draft-07 (its "$schema" URI lacks the "#" jsonschema looks up).
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda error: list(error.path))
    return [f"{list(error.path)}: {error.message}" for error in errors]


def test_compose_file_validates_against_the_compose_spec(repo_root: Path, compose: dict[str, Any]) -> None:
    errors = spec_errors(repo_root, compose)
    assert not errors, "\n".join(errors)


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services: dict[str, dict[str, Any]] = compose["services"]
    assert {"rabbitmq", "postgres", "prometheus", "grafana"} <= set(services)
    missing = [
        name
        for name, service in services.items()
        if not service.get("healthcheck", {}).get("test") or service["healthcheck"].get("disable")
    ]
    assert not missing, f"services without a healthcheck: {missing}"


def test_app_services_build_from_the_dockerfile_targets(
    repo_root: Path, compose: dict[str, Any], app_services: dict[str, int]
) -> None:
    dockerfile = repo_root / "deploy" / "docker" / "Dockerfile"
    targets = dockerfile_targets(dockerfile)
    for name, port in app_services.items():
        service = compose["services"][name]
        build = service["build"]
        assert build["context"] == "."
        assert (repo_root / build["context"] / build["dockerfile"]).resolve() == dockerfile.resolve()
        assert build["target"] == name
        assert build["target"] in targets, f"{name}: no stage {build['target']!r} in the Dockerfile"
        published = [str(mapping) for mapping in service.get("ports", [])]
        if name in PUBLISHED:
            assert any(mapping.endswith(f":{port}") for mapping in published), name
        else:
            assert not published, f"{name} is internal (scaled with --scale); it publishes no port"
        assert service["environment"]["AUTOMATION_HTTP_HOST"] == "0.0.0.0"


def test_app_services_wait_for_healthy_backends_and_migrate_first(
    compose: dict[str, Any], app_services: dict[str, int]
) -> None:
    for name in app_services:
        service = compose["services"][name]
        assert service["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "rabbitmq": {"condition": "service_healthy"},
        }
        command = " ".join(service["entrypoint"])
        package = "automation_" + name.replace("-", "_")
        assert f"python -m {package} migrate && exec python -m {package} serve" in command


def test_published_ports_bind_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} on every interface"


def test_secrets_have_no_default(repo_root: Path) -> None:
    text = (repo_root / "docker-compose.yml").read_text()
    for variable in SECRET_VARIABLES:
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, f"{variable} is not used"
        assert all(use.startswith(":?") for use in uses), f"{variable} must be required (${{{variable}:?...}})"


def test_the_in_memory_working_directories_override(repo_root: Path, compose: dict[str, Any]) -> None:
    """deploy/compose/executor-workdirs-in-memory.yml: a valid Compose file that adds to the executor only."""
    override = yaml.safe_load((repo_root / "deploy/compose/executor-workdirs-in-memory.yml").read_text())
    errors = spec_errors(repo_root, override)
    assert not errors, "\n".join(errors)
    assert set(override["services"]) == {"executor"}
    executor = override["services"]["executor"]
    root = executor["environment"]["AUTOMATION_EXECUTOR_WORKDIR_ROOT"]
    # Compose merges a mapping of environment variables into the base's mapping.
    assert isinstance(compose["services"]["executor"]["environment"], dict)
    assert "AUTOMATION_EXECUTOR_WORKDIR_ROOT" not in compose["services"]["executor"]["environment"]
    (mount,) = executor["tmpfs"]
    path, _, options = mount.partition(":")
    assert path == root
    # Writable by the image's (non-root) user as /tmp is, with options every engine takes (no uid=/gid=).
    dockerfile = (repo_root / "deploy" / "docker" / "Dockerfile").read_text()
    assert set(re.findall(r"^USER (\d+):\d+$", dockerfile, re.MULTILINE)) == {"10001"}
    assert dict(option.split("=", 1) for option in options.split(",")) == {"size": "1g", "mode": "1777"}

"""The compose deployment, read as compose reads it, against the settings the app reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
LB_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
SETTINGS = {f"GAN_{name.upper()}" for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(e.split("=", 1) for e in env)


def test_services_and_their_roles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"api", "worker", "redis", "lb"}
    assert services["api"]["build"]["target"] == "api"
    assert services["worker"]["build"]["target"] == "worker"
    for name, service in services.items():
        if name != "api":  # the api image's HEALTHCHECK probes /readyz on its $PORT
            assert "healthcheck" in service and service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name


def test_api_and_workers_share_the_data_volume_the_queue_and_the_settings(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    mounts = {
        name: {v.split(":")[0]: v.split(":")[1] for v in services[name]["volumes"]}
        for name in ("api", "worker")
    }
    assert mounts["api"] == mounts["worker"] == {"data": "/data"}
    # The image's models/ is the starting repository: no volume hides a rebuilt image's models.
    assert "models" not in compose["volumes"]
    api_env, worker_env = _env(services["api"]), _env(services["worker"])
    assert api_env.items() <= worker_env.items(), "workers get every shared setting"
    assert "GAN_MODELS_DIR" not in api_env and "GAN_PUBLISH_DIR" not in api_env
    assert api_env["GAN_DATA_DIR"] == "/data"  # jobs publish into <data_dir>/models
    assert api_env["GAN_QUEUE_URL"].startswith("redis://redis:")


def test_api_replicas_scale_behind_one_entry_point(compose: dict[str, Any]) -> None:
    api, lb = compose["services"]["api"], compose["services"]["lb"]
    assert "container_name" not in api  # a fixed name allows one replica only
    assert "ports" not in api  # reached through the load balancer only
    assert lb["ports"] == ["8000:8000"]
    assert lb["volumes"] == [
        f"./{LB_CONFIG.relative_to(ROOT)}:/usr/local/etc/haproxy/haproxy.cfg:ro"
    ]
    # Compose's DNS name for every api replica, on the port the api image listens on.
    assert re.search(
        r"^\s+server-template api \S+ api:8000 resolvers docker ", LB_CONFIG.read_text(), re.M
    )


def test_the_load_balancer_agrees_with_the_api_settings() -> None:
    config = LB_CONFIG.read_text()
    fields = Settings.model_fields

    def seconds(name: str) -> float:
        (value,) = re.findall(rf"^\s+timeout {name} (\d+)s\b", config, re.M)
        return float(value)

    limit = fields["max_dataset_bytes"].default  # the largest body the api takes
    (refused,) = re.findall(r"req\.hdr_val\(content-length\) gt (\d+)", config)
    assert int(refused) == limit and f"over {limit} bytes" in config
    assert "option httpchk GET /readyz" in config
    assert seconds("http-request") == fields["header_timeout_s"].default
    assert seconds("http-keep-alive") == fields["keep_alive_s"].default
    assert seconds("client") > fields["body_timeout_s"].default  # the api cuts slow bodies
    assert seconds("server") > fields["request_timeout_s"].default  # and slow engine calls
    assert re.search(r"set-timeout server 1h if events$", config, re.M)  # quiet SSE streams


def test_every_variable_is_a_setting_the_app_reads(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        unknown = {k for k in _env(service) if k.startswith("GAN_")} - SETTINGS
        assert not unknown, f"{name} sets unknown variables: {sorted(unknown)}"


def test_the_dockerfile_installs_as_the_makefile_does() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "-c requirements/constraints.txt" in dockerfile
    assert "-c requirements/constraints.txt" in makefile
    assert re.search(r"^FROM .* AS api$", dockerfile, re.M)
    assert re.search(r"^FROM .* AS worker$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "/readyz" in dockerfile
    assert re.search(r"^USER gan$", dockerfile, re.M), "the api runs as a non-root user"
    for base in ("BASE", "CUDA_BASE"):
        assert re.search(rf"^ARG {base}=\S+@sha256:[0-9a-f]{{64}}$", dockerfile, re.M), base
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    constraints = (ROOT / "requirements" / "constraints.txt").read_text()
    assert re.search(r"^onnxruntime-gpu==", constraints, re.M), "the GPU image's pin"

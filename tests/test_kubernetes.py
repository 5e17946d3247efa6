"""The Kubernetes manifests (deploy/kubernetes), rendered by kubectl and checked offline.

Every kustomization renders with ``kubectl kustomize`` (``make kubectl`` installs Debian's;
``KUBECTL`` names another), every object validates against the Kubernetes schemas that the
kubernetes-validate package ships (strict: an unknown field fails), and the objects agree
with the app: real settings, real probe routes, the ports it listens on, the image's user.
Without kubectl the test skips, except under ``CI=true``, where it fails.

KServe's resources are not in those schemas, and no package we can install ships KServe's
CRDs: their required fields are checked here, and their containers as Kubernetes containers.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.main import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = ("base", "overlays/cpu", "overlays/gpu", "kserve")
OVERLAYS = ("overlays/cpu", "overlays/gpu")
SETTINGS = {f"GAN_{name.upper()}" for name in Settings.model_fields}
# The manifests use nothing newer than Kubernetes 1.29 has; checked there and against the
# newest schemas the package ships.
VERSIONS = ("1.29", kubernetes_validate.latest_version())
KSERVE = "serving.kserve.io"
TEST_KEY = "test-admin-key-4b1d"  # what the tests write into admin.env
WORKLOADS = ("Deployment", "StatefulSet")

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def kubectl() -> str:
    found = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not found:
        missing = "no kubectl: `make kubectl` installs Debian's (kubernetes-client)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must render the Kubernetes manifests: {missing}")
        pytest.skip(missing)
    return found


def _copy(to: Path, *, with_keys: bool) -> Path:
    """deploy/kubernetes, elsewhere: with an admin.env beside each example, or with none."""
    tree = to / "kubernetes"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("admin.env"))
    if with_keys:
        for example in tree.rglob("admin.env.example"):
            example.with_name("admin.env").write_text(f"GAN_API_KEY={TEST_KEY}\n")
    return tree


def _kustomize(kubectl: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def rendered(kubectl: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    tree = _copy(tmp_path_factory.mktemp("deploy"), with_keys=True)
    out = {}
    for name in KUSTOMIZATIONS:
        done = _kustomize(kubectl, tree / name)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        # Written for kustomize v2.0.3 onward: newer ones may only warn about deprecated fields.
        noise = [
            line
            for line in done.stderr.splitlines()
            if line.strip() and not re.match(r"#? ?Warning: '\w+' is deprecated", line)
        ]
        assert not noise, f"{name}: {done.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return out


def _all(rendered: dict[str, list[Obj]]) -> Iterator[tuple[str, Obj]]:
    for name, objects in rendered.items():
        for obj in objects:
            yield name, obj


def _one(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod(obj: Obj) -> Obj:
    """The pod spec of a workload, or of a KServe ServingRuntime (which holds one inline)."""
    spec: Obj = obj["spec"]["template"]["spec"] if obj["kind"] in WORKLOADS else obj["spec"]
    return spec


def _pods(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        if obj["kind"] in WORKLOADS or obj["kind"] == "ServingRuntime":
            yield obj, _pod(obj)


def _env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def _config(objects: list[Obj], container: Obj) -> dict[str, str]:
    """What the container's environment gets from ConfigMaps (envFrom) and plain values."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values |= _one(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
    values |= {k: e["value"] for k, e in _env(container).items() if "value" in e}
    return values


def test_every_kustomization_is_rendered() -> None:
    found = {str(p.parent.relative_to(DEPLOY)) for p in DEPLOY.rglob("kustomization.yaml")}
    assert found == set(KUSTOMIZATIONS)


def test_the_admin_key_is_never_committed_and_required(kubectl: str, tmp_path: Path) -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "--no-index", str(DEPLOY / "base" / "admin.env")],
        cwd=ROOT,
    )
    assert ignored.returncode == 0, "deploy/kubernetes/**/admin.env must be in .gitignore"
    tracked = subprocess.run(
        ["git", "ls-files", "--", "deploy/kubernetes"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith("/admin.env")], "a key is in git: git rm it"
    tree = _copy(tmp_path, with_keys=False)
    for name in KUSTOMIZATIONS:
        done = _kustomize(kubectl, tree / name)
        assert done.returncode != 0 and "admin.env" in done.stderr, name


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    rendered: dict[str, list[Obj]], version: str
) -> None:
    checked, errors = 0, []
    for name, obj in _all(rendered):
        if obj["apiVersion"].startswith(f"{KSERVE}/"):
            continue  # test_the_kserve_resources
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
            errors.append(f"{where} at {'.'.join(map(str, e.path))}: {e.message}")
        checked += 1
    assert not errors, "\n".join(errors)
    assert checked >= 3 * 10  # base and both overlays: 10 objects each


def test_the_kserve_resources(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["kserve"]
    runtime = _one(objects, "ServingRuntime", "gan-serve")
    service = _one(objects, "InferenceService", "gan-serve")
    assert runtime["apiVersion"] == f"{KSERVE}/v1alpha1"
    assert service["apiVersion"] == f"{KSERVE}/v1beta1"
    # Required by KServe's CRDs: spec.containers; each format's name; spec.predictor; and,
    # for a model, its modelFormat.name.
    spec = runtime["spec"]
    formats = {f["name"] for f in spec["supportedModelFormats"]}
    assert spec["protocolVersions"] == ["v2"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the one KServe merges the model into
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] in formats
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    # Their Kubernetes parts against the Kubernetes schemas: the runtime's containers as a
    # pod's, the model (a container, less KServe's own fields) as a container.
    kserve_fields = {"modelFormat", "runtime", "protocolVersion", "storageUri", "runtimeVersion"}
    as_container = {k: v for k, v in model.items() if k not in kserve_fields}
    for containers in (spec["containers"], [{"name": "kserve-container", **as_container}]):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "kserve"},
            "spec": {"containers": containers},
        }
        for version in VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)


def test_every_variable_is_a_setting_the_app_reads(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        for obj, pod in _pods(objects):
            for container in pod["containers"]:
                names = set(_env(container)) | set(_config(objects, container))
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        names |= set(_one(objects, "Secret", source["secretRef"]["name"])["data"])
                unknown = {n for n in names if n.startswith("GAN_")} - SETTINGS
                where = f"{name}: {obj['metadata']['name']}/{container['name']}"
                assert not unknown, f"{where} sets unknown variables: {sorted(unknown)}"
        for obj in objects:
            if obj["kind"] == "ConfigMap":
                assert set(obj["data"]) <= SETTINGS, f"{name}: {obj['metadata']['name']}"


def test_the_admin_key_comes_from_a_secret(rendered: dict[str, list[Obj]]) -> None:
    encoded = base64.b64encode(TEST_KEY.encode()).decode()
    for name, objects in rendered.items():
        secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
        for obj in objects:
            if obj["kind"] != "Secret":  # the key appears in Secrets only, never inlined
                assert TEST_KEY not in yaml.safe_dump(obj), f"{name}: {obj['metadata']['name']}"
        for obj, pod in _pods(objects):
            for container in pod["containers"]:
                if not any(c in container["name"] for c in ("api", "kserve")):
                    continue
                env = _env(container)
                if "GAN_API_KEY" in env:
                    ref = env["GAN_API_KEY"]["valueFrom"]["secretKeyRef"]
                    secret, key = secrets[ref["name"]], ref["key"]
                else:
                    (secret,) = [
                        secrets[s["secretRef"]["name"]]
                        for s in container.get("envFrom", [])
                        if "secretRef" in s
                    ]
                    key = "GAN_API_KEY"
                assert secret["data"][key] == encoded, f"{name}: {obj['metadata']['name']}"


def test_probes_ask_routes_the_app_has(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    app = create_app(Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data"))
    routes = {getattr(route, "path", None) for route in app.routes}
    probed = set()
    for name, objects in rendered.items():
        for obj, pod in _pods(objects):
            for container in pod["containers"]:
                ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
                for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                    get = container.get(kind, {}).get("httpGet")
                    if get is None:
                        continue
                    where = f"{name}: {obj['metadata']['name']} {kind}"
                    assert get["path"] in routes, where
                    assert ports.get(get["port"], get["port"]) in ports.values(), where
                    probed.add(get["path"])
    assert {"/healthz", "/readyz", "/v2/health/ready", "/v2/health/live"} <= probed


def test_the_app_listens_where_services_and_kserve_send(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        for _, pod in _pods(objects):
            for container in pod["containers"]:
                if container["image"].startswith("gan-serve:api"):
                    (port,) = container["ports"]
                    port_env = _env(container)["PORT"]["value"]  # what python -m app binds
                    assert int(port_env) == port["containerPort"], name
        for service in (o for o in objects if o["kind"] == "Service"):
            selector = service["spec"]["selector"].items()
            backends = [
                container
                for obj in objects
                if obj["kind"] in WORKLOADS
                and selector <= obj["spec"]["template"]["metadata"]["labels"].items()
                for container in _pod(obj)["containers"]
            ]
            assert backends, f"{name}: service {service['metadata']['name']} selects no pod"
            for port in service["spec"]["ports"]:
                target = port["targetPort"]
                exposed = {
                    p.get("name") if isinstance(target, str) else p["containerPort"]
                    for c in backends
                    for p in c.get("ports", [])
                }
                assert target in exposed, f"{name}: {service['metadata']['name']} -> {target}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_replicas_scale_share_data_and_queue(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    api = _one(objects, "Deployment", "gan-serve-api")
    worker = _one(objects, "Deployment", "gan-serve-worker")
    assert "replicas" not in api["spec"], "the HPA owns the replica count"
    hpa = _one(objects, "HorizontalPodAutoscaler", "gan-serve-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gan-serve-api",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    pdb = _one(objects, "PodDisruptionBudget", "gan-serve-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert _one(objects, "PersistentVolumeClaim", "gan-serve-data")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    redis = _one(objects, "Service", "gan-serve-redis")
    (redis_port,) = redis["spec"]["ports"]
    for deployment in (api, worker):
        pod = _pod(deployment)
        (container,) = pod["containers"]
        config = _config(objects, container)
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert claims[mounts[config["GAN_DATA_DIR"]]] == "gan-serve-data"
        assert config["GAN_QUEUE_URL"] == f"redis://gan-serve-redis:{redis_port['port']}/0"
    # args, not command: the image's entrypoint (tini) stays PID 1 and forwards SIGTERM.
    (container,) = _pod(worker)["containers"]
    assert container["args"] == ["python", "-m", "app.jobs.worker"]
    assert "command" not in container


def test_pods_run_as_the_image_user_on_a_read_only_root(rendered: dict[str, list[Obj]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"useradd --uid (\d+)", dockerfile)
    assert user, "the Dockerfile makes its user"
    targets = set(re.findall(r"^FROM .* AS (\w+)$", dockerfile, re.M))
    for name, objects in rendered.items():
        for obj, pod in _pods(objects):
            pod_context = pod.get("securityContext", {})
            for container in pod["containers"]:
                where = f"{name}: {obj['metadata']['name']}/{container['name']}"
                context = pod_context | container.get("securityContext", {})
                assert context["runAsNonRoot"] is True, where
                assert context["allowPrivilegeEscalation"] is False, where
                assert context["capabilities"]["drop"] == ["ALL"], where
                if obj["kind"] in WORKLOADS:  # KServe: the image's /data, in its writable layer
                    assert context["readOnlyRootFilesystem"] is True, where
                image, _, tag = container["image"].partition(":")
                if image != "gan-serve":
                    continue
                assert tag.removesuffix("-gpu") in targets, where  # a Dockerfile target
                assert context["runAsUser"] == int(user.group(1)), where
                if obj["kind"] in WORKLOADS:
                    # The app writes under GAN_DATA_DIR and /tmp only (the engines' fork server).
                    writable = {m["mountPath"] for m in container["volumeMounts"]}
                    assert writable == {_config(objects, container)["GAN_DATA_DIR"], "/tmp"}, where


def test_the_overlays_differ_in_flavour_only_where_they_should(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, gpu in (("overlays/cpu", False), ("overlays/gpu", True)):
        objects = rendered[overlay]
        for name in ("gan-serve-api", "gan-serve-worker"):
            pod = _pod(_one(objects, "Deployment", name))
            (container,) = pod["containers"]
            assert _config(objects, container)["GAN_DEVICE"] == ("cuda" if gpu else "cpu")
            assert container["image"].endswith("-gpu") == gpu, name
            limits = container["resources"]["limits"]
            assert ("nvidia.com/gpu" in limits) == gpu, name
            assert ("tolerations" in pod) == gpu, name
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert "memory" in limits, name

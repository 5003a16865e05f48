"""Deployment files, checked statically (no Docker engine or cluster here: nothing is built or applied).

The manifests must parse, reference only objects defined next to them, use only settings the gateway
reads, and keep the operational contract: GPU request, probes on /readyz and /healthz, a preStop drain
and a grace period longer than the drain timeout, non-root images with a healthcheck and a weights volume.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.loader import parse_agent
from gateway.settings import ENV_VARS
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def k8s_objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc, path
                objs.append(doc)
    return objs


def find(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in k8s_objects() if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def gateway_deployment() -> dict[str, Any]:
    return find("Deployment", "voicegw")


def gateway_container() -> dict[str, Any]:
    containers = gateway_deployment()["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "gateway"]
    assert isinstance(container, dict)
    return container


def env_config() -> dict[str, str]:
    data = find("ConfigMap", "voicegw-env")["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return dict(data)


def test_every_manifest_parses_and_is_named() -> None:
    objs = k8s_objects()
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim"} <= kinds
    for o in objs:
        if o["kind"] != "Kustomization":
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", o["metadata"]["name"])


def test_kustomization_lists_existing_files() -> None:
    kust = find("Kustomization")
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    assert "secret.yaml" not in kust["resources"]  # the template must never be applied with placeholders


def test_deployment_requests_one_gpu() -> None:
    resources = gateway_container()["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1


def test_probes_hit_readyz_and_healthz() -> None:
    c = gateway_container()
    port_names = {p["name"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in port_names


def test_prestop_drains_and_grace_period_covers_the_drain_timeout() -> None:
    command = gateway_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["voicegw", "drain"] and "--wait" in command
    grace = gateway_deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(env_config()["VOICEGW_DRAIN_TIMEOUT_S"])
    assert grace >= drain + 30


def test_rolling_update_never_drops_capacity() -> None:
    rolling = gateway_deployment()["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0 and rolling["maxSurge"] >= 1


def test_runs_as_non_root() -> None:
    pod = gateway_deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert gateway_container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_referenced_configmaps_secrets_and_claims_exist() -> None:
    objs = k8s_objects()
    defined = {(o["kind"], o["metadata"]["name"]) for o in objs if "metadata" in o}
    c = gateway_container()
    for src in c["envFrom"]:
        if "configMapRef" in src:
            assert ("ConfigMap", src["configMapRef"]["name"]) in defined
        if "secretRef" in src:
            assert ("Secret", src["secretRef"]["name"]) in defined
    volumes = {v["name"]: v for v in gateway_deployment()["spec"]["template"]["spec"]["volumes"]}
    for v in volumes.values():
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in defined
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in defined
    for mount in c["volumeMounts"]:
        assert mount["name"] in volumes
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert env_config()["VOICEGW_AGENTS_DIR"] in mounts
    assert env_config()["VOICEGW_RECORDINGS_DIR"] in mounts


def test_service_selects_the_pods_and_targets_named_ports() -> None:
    svc = find("Service", "voicegw")
    labels = gateway_deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert gateway_deployment()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in gateway_container()["ports"]}
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in port_names
    ingress = find("Ingress", "voicegw")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "voicegw" and backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    redis_url = env_config()["REDIS_URL"]
    assert find("Service", "voicegw-redis")["metadata"]["name"] in redis_url


def test_configmap_and_secret_keys_are_settings_the_gateway_reads() -> None:
    keys = set(env_config()) | set(find("Secret", "voicegw-secrets")["stringData"])
    for key in keys:
        assert key in ENV_VARS, f"{key} is not read by gateway/settings.py"


def test_agents_configmap_holds_valid_agents() -> None:
    data = find("ConfigMap", "voicegw-agents")["data"]
    assert data
    for name, text in data.items():
        agent, problems = parse_agent(text, name)
        assert problems == [] and agent is not None, problems


# ---- compose -------------------------------------------------------------
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_runs_gateway_and_redis() -> None:
    services = compose()["services"]
    assert {"gateway", "redis"} <= set(services)
    for name in ("gateway", "gateway-gpu"):
        gw = services[name]
        assert gw["depends_on"]["redis"]["condition"] == "service_healthy"
        assert gw["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")  # AUTH
        assert gw["environment"]["REDIS_URL"].endswith("@redis:6379/0")
        assert (DEPLOY / gw["build"]["context"] / gw["build"]["dockerfile"]).is_file()
        assert any(v.startswith("models:/models") for v in gw["volumes"])
        grace = int(gw["stop_grace_period"].rstrip("s"))
        assert grace >= float(gw["environment"].get("VOICEGW_DRAIN_TIMEOUT_S", 600))
        for key in gw["environment"]:
            assert key in ENV_VARS, key
    gpu = services["gateway-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    assert "--requirepass" in services["redis"]["command"] and "ports" not in services["redis"]


def test_redis_requires_auth_and_only_gateway_pods_reach_it() -> None:
    redis = find("Deployment", "voicegw-redis")["spec"]["template"]["spec"]["containers"][0]
    assert "--requirepass" in redis["args"]
    assert any(e["name"] == "REDIS_PASSWORD" and e["valueFrom"]["secretKeyRef"]["name"] == "voicegw-redis"
               for e in redis["env"])
    env = {e["name"]: e for e in gateway_container()["env"]}
    assert env["REDIS_URL"]["value"].startswith("redis://:$(REDIS_PASSWORD)@voicegw-redis:")
    assert list(env).index("REDIS_PASSWORD") < list(env).index("REDIS_URL")  # $(…) needs it defined first
    assert find("Secret", "voicegw-redis")["stringData"]["password"]
    policy = find("NetworkPolicy", "voicegw-redis")["spec"]
    redis_labels = find("Deployment", "voicegw-redis")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_labels.items()
    gateway_labels = gateway_deployment()["spec"]["template"]["metadata"]["labels"]
    [rule] = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == [6379]
    assert all(src["podSelector"]["matchLabels"].items() <= gateway_labels.items() for src in rule["from"])


# ---- Dockerfiles -----------------------------------------------------------
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return out


DOCKERFILES = [DEPLOY / "Dockerfile.gpu", DEPLOY / "Dockerfile.cpu"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_contract(path: Path) -> None:
    ins = instructions(path)
    words = [w for w, _ in ins]
    known = {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "USER", "EXPOSE", "VOLUME", "HEALTHCHECK", "CMD", "ARG"}
    assert set(words) <= known, set(words) - known
    last_from = max(i for i, w in enumerate(words) if w == "FROM")
    final = ins[last_from:]
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "the final stage must run as a non-root user"
    # USER comes after every RUN of the final stage (nothing runs as root once the app starts).
    assert max(i for i, (w, _) in enumerate(final) if w == "USER") > max(
        i for i, (w, _) in enumerate(final) if w == "RUN")
    (health,) = [a for w, a in final if w == "HEALTHCHECK"]
    assert "/healthz" in health and "CMD" in health
    volumes = [json.loads(a) for w, a in final if w == "VOLUME"]
    assert any("/models" in v for v in volumes)
    (cmd,) = [a for w, a in final if w == "CMD"]
    assert json.loads(cmd)[:2] == ["voicegw", "serve"], "exec form, so the gateway gets SIGTERM itself"
    assert ("EXPOSE", "8080") in final
    env = " ".join(a for w, a in final if w == "ENV")
    assert "VOICEGW_HOST=0.0.0.0" in env and "HF_HUB_OFFLINE=1" in env


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_files_that_exist_and_ignores_the_venv(path: Path) -> None:
    for word, args in instructions(path):
        assert word != "ADD", "use COPY (ADD fetches URLs and unpacks archives implicitly)"
        if word != "COPY" or "--from=" in args:
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"{path.name}: COPY source {src} does not exist"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore


def test_dev_sh_test_lints_every_python_tree_and_runs_types_and_tests() -> None:
    """README's second command: ruff over every folder holding Python, then mypy, then pytest."""
    script = (ROOT / "dev.sh").read_text()
    body = script[script.index("    test)"):]
    body = body[: body.index(";;")]
    ruff = re.search(r'ruff" check ([^\n]+)', body)
    assert ruff is not None
    trees = {p.parent.name for p in ROOT.glob("*/*.py")}
    assert trees <= set(ruff[1].split()), f"not linted: {trees - set(ruff[1].split())}"
    assert body.index("ruff") < body.index('mypy"') < body.index("-m pytest")


# ---- split deployment: telephony (CPU, HPA) and speech (GPU) apart -----------------------------------------
SPLIT = K8S / "split"


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """RFC 6902 add/replace/remove/test, as kustomize applies them (enough for our patches)."""
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        index: Any = int(last) if isinstance(node, list) and last != "-" else last
        kind = op["op"]
        if kind == "test":
            assert node[index] == op["value"], f"patch test failed at {op['path']}: {node[index]!r}"
        elif kind == "remove":
            del node[index]
        elif kind == "replace":
            assert (index in node) if isinstance(node, dict) else index < len(node), f"nothing at {op['path']}"
            node[index] = op["value"]
        elif kind == "add":
            if isinstance(node, list):
                node.insert(len(node) if last == "-" else index, op["value"])
            else:
                node[index] = op["value"]
        else:
            raise AssertionError(f"unsupported patch op {kind}")


def split_objects() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/k8s/split` creates: the base with the patches applied, plus the overlay's own."""
    kust = yaml.safe_load((SPLIT / "kustomization.yaml").read_text())
    objs: list[dict[str, Any]] = []
    for res in kust["resources"]:
        path = (SPLIT / res).resolve()
        if path.is_dir():
            base = yaml.safe_load((path / "kustomization.yaml").read_text())
            files = [path / r for r in base["resources"]]
        else:
            files = [path]
        for f in files:
            objs += [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
    for patch in kust["patches"]:
        target = patch["target"]
        (obj,) = [o for o in objs if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        apply_json_patch(obj, yaml.safe_load((SPLIT / patch["path"]).read_text()))
    return objs


def split_find(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in split_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def test_split_telephony_has_no_gpu_no_model_and_speaks_through_the_speech_service() -> None:
    tel = split_find("Deployment", "voicegw")
    c = _container(tel)
    env = _env(c)
    assert env["VOICEGW_ROLE"] == "telephony"
    base_env = _env(_container(find("Deployment", "voicegw")))
    assert base_env.items() <= env.items()  # the base's own variables are kept (appended to, not replaced)
    assert "nvidia.com/gpu" not in json.dumps(c["resources"]) and "tolerations" not in tel["spec"]["template"]["spec"]
    assert "/models" not in {m["mountPath"] for m in c["volumeMounts"]}
    assert "models" not in {v["name"] for v in tel["spec"]["template"]["spec"]["volumes"]}
    assert c["image"].endswith(":cpu") and "replicas" not in tel["spec"]  # the HPA owns the count
    speech_svc = split_find("Service", "voicegw-speech")
    port = next(p["port"] for p in speech_svc["spec"]["ports"] if p["name"] == "http")
    assert env["CHATTTS_API_URL"] == f"http://voicegw-speech:{port}"
    assert env["CHATTTS_API_KEY"] == {"secretKeyRef": {"name": "voicegw-secrets", "key": "VOICEGW_API_KEY"}}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_split_hpa_scales_the_telephony_deployment_on_cpu_or_calls_and_scales_in_slowly() -> None:
    hpa = split_find("HorizontalPodAutoscaler", "voicegw-telephony")
    assert hpa["apiVersion"] == "autoscaling/v2"
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "voicegw")
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "voicegw_active_calls"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_split_speech_pods_request_a_gpu_and_sit_behind_their_own_service() -> None:
    sp = split_find("Deployment", "voicegw-speech")
    c = _container(sp)
    assert _env(c)["VOICEGW_ROLE"] == "speech"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1 and c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["startupProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in port_names
    assert {m["mountPath"]: m for m in c["volumeMounts"]}["/models"]["readOnly"] is True
    assert sp["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = sp["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["allowPrivilegeEscalation"] is False
    labels = sp["spec"]["template"]["metadata"]["labels"]
    svc = split_find("Service", "voicegw-speech")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["selector"].items() <= labels.items()
    assert sp["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert all(p["targetPort"] in port_names for p in svc["spec"]["ports"])
    # Twilio's Service (and so the Ingress) never lands on a speech pod, and the speech one never on telephony.
    public = split_find("Service", "voicegw")
    assert not public["spec"]["selector"].items() <= labels.items()
    tel_labels = split_find("Deployment", "voicegw")["spec"]["template"]["metadata"]["labels"]
    assert not svc["spec"]["selector"].items() <= tel_labels.items()


def test_split_references_exist_and_every_variable_is_a_setting() -> None:
    objs = split_objects()
    defined = {(o["kind"], o["metadata"]["name"]) for o in objs} | {("Secret", "voicegw-secrets")}
    for dep in (o for o in objs if o["kind"] == "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        for c in pod["containers"]:
            for src in c.get("envFrom", []):
                ref = src.get("configMapRef") or src.get("secretRef")
                assert (("ConfigMap" if "configMapRef" in src else "Secret"), ref["name"]) in defined
            if "voicegw" in c["image"]:  # the gateway's own settings (Redis has its own)
                expanded = json.dumps(c.get("env", []))
                for name in _env(c):  # a setting, or a helper only expanded into one as $(NAME)
                    assert name in ENV_VARS or f"$({name})" in expanded, name
            volumes = {v["name"] for v in pod["volumes"]}
            assert {m["name"] for m in c["volumeMounts"]} <= volumes
        for v in pod["volumes"]:
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in defined


def test_compose_split_runs_telephony_speech_and_redis() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.split.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"telephony", "speech", "redis"}
    tel, speech = services["telephony"], services["speech"]
    assert tel["environment"]["VOICEGW_ROLE"] == "telephony" and speech["environment"]["VOICEGW_ROLE"] == "speech"
    assert tel["environment"]["CHATTTS_API_URL"] == f"http://speech:{speech['environment']['VOICEGW_PORT']}"
    assert "ports" not in speech  # only telephony talks to it
    assert "nvidia" == speech["deploy"]["resources"]["reservations"]["devices"][0]["driver"]
    assert "deploy" not in tel and not any(v.startswith("models:") for v in tel["volumes"])
    assert any(v.startswith("models:/models") for v in speech["volumes"]) and "/readyz" in str(speech["healthcheck"])
    for svc in (tel, speech):
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        for key in svc["environment"]:
            assert key in ENV_VARS, key
    assert int(tel["stop_grace_period"].rstrip("s")) >= float(tel["environment"]["VOICEGW_DRAIN_TIMEOUT_S"])

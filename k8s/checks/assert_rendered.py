#!/usr/bin/env python3
"""Assertions on rendered kustomize output that no schema validator makes.

    assert_rendered.py --base BASE.yaml [--out DIR] NAME=RENDERED.yaml [NAME=RENDERED.yaml ...]

BASE.yaml is `kubectl kustomize k8s/base`; each NAME=RENDERED.yaml an overlay
(`kubectl kustomize k8s/overlays/NAME`). An overlay whose name contains "native" must add
sockproxy as a native sidecar (initContainers, restartPolicy: Always), any other as a plain
second container. Prints one line per check ("ok" or "FAIL") and exits 1 if any failed.
With --out, writes DIR/NAME.sockproxy.json (the rendered sockproxy container) for scripts.

The seed facts it holds the manifests to: nginx in the "combined" container proxies
/theia/socket.io/ to localhost:3000, so sockproxy must listen on loopback port 3000 and Theia
must move to the port sockproxy forwards to; the sidecar's probes, the GKE health check and
the downward API follow CONTRACT.md section 1 (admin listener: /healthz, /readyz).
"""
import copy
import json
import pathlib
import re
import sys

import yaml

NAMESPACE = "coditect-app"
DEPLOYMENT = "coditect-combined"
SERVICE = "coditect-combined-service"
MAIN = "combined"
SIDECAR = "sockproxy"
NGINX_PROXIES_TO = 3000  # seed: nginx `proxy_pass http://localhost:3000`
THEIA_PORT_ENV = "THEIA_PORT"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
UID_NONROOT = 65532

failures = 0


def check(ok, what, detail=""):
    global failures
    if ok:
        print(f"ok   {what}")
    else:
        failures += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))
    return ok


def load(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]


def find(docs, kind, name):
    hits = [d for d in docs if d.get("kind") == kind and d["metadata"].get("name") == name]
    return hits[0] if len(hits) == 1 else None


def iana_svc_name(name):
    """RFC 6335 service name, as Kubernetes checks containerPort names (IsValidPortName)."""
    return (isinstance(name, str) and 1 <= len(name) <= 15 and re.fullmatch(r"[a-z0-9-]+", name) is not None
            and re.search(r"[a-z]", name) is not None and not name.startswith("-")
            and not name.endswith("-") and "--" not in name)


def parse_args(args):
    """`--flag=value` / `--flag value` / bare `--flag` → dict; positional words listed under ''."""
    out, i = {"": []}, 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a[2:].split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                k, v = a[2:], args[i + 1]
                i += 1
            else:
                k, v = a[2:], True
            out[k] = v
        else:
            out[""].append(a)
        i += 1
    return out


def host_port(addr):
    addr = str(addr).removeprefix("http://")
    host, _, port = addr.rpartition(":")
    return host, int(port) if port.isdigit() else None


def env_map(container):
    return {e["name"]: e for e in container.get("env") or []}


def probe_port(probe, ports_by_name):
    port = probe["httpGet"]["port"]
    return ports_by_name.get(port) if isinstance(port, str) else port


def check_overlay(name, docs, base_docs):
    native = "native" in name
    p = f"[{name}]"
    # --- objects and namespace -------------------------------------------------------------
    base_keys = {(d["kind"], d["metadata"]["name"]) for d in base_docs}
    keys = {(d["kind"], d["metadata"]["name"]) for d in docs}
    check(keys - base_keys == {("BackendConfig", "coditect-backend-config")} and base_keys <= keys,
          f"{p} objects: the base's plus one BackendConfig", f"{sorted(keys)}")
    check(all(d["metadata"].get("namespace") == NAMESPACE for d in docs),
          f"{p} every object in namespace {NAMESPACE}",
          str([(d["kind"], d["metadata"].get("namespace")) for d in docs]))
    dep, base_dep = find(docs, "Deployment", DEPLOYMENT), find(base_docs, "Deployment", DEPLOYMENT)
    if not check(dep is not None and base_dep is not None, f"{p} Deployment {DEPLOYMENT} rendered"):
        return None
    pod, base_pod = dep["spec"]["template"]["spec"], base_dep["spec"]["template"]["spec"]
    containers, inits = pod.get("containers") or [], pod.get("initContainers") or []

    # --- where the sidecar is ----------------------------------------------------------------
    in_main = [c for c in containers if c["name"] == SIDECAR]
    in_init = [c for c in inits if c["name"] == SIDECAR]
    if native:
        check(len(in_init) == 1 and not in_main, f"{p} sockproxy is an initContainer, not a container")
        sc = in_init[0] if in_init else None
        check(sc is not None and sc.get("restartPolicy") == "Always",
              f"{p} sockproxy initContainer has restartPolicy: Always (native sidecar)")
    else:
        check(len(in_main) == 1 and not in_init, f"{p} sockproxy is a container, not an initContainer")
        sc = in_main[0] if in_main else None
        check(sc is not None and "restartPolicy" not in sc, f"{p} classic sidecar has no restartPolicy")
    if sc is None:
        return None
    check(containers and containers[0]["name"] == MAIN, f"{p} '{MAIN}' is still containers[0]",
          str([c["name"] for c in containers]))
    ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
    check(ann.get("kubectl.kubernetes.io/default-container") == MAIN
          and any(c["name"] == MAIN for c in containers),
          f"{p} pod annotation kubectl.kubernetes.io/default-container: {MAIN}", str(ann))

    # --- sockproxy's command line --------------------------------------------------------------
    args = parse_args(sc.get("args") or [])
    check(not sc.get("command"), f"{p} sockproxy keeps the image ENTRYPOINT (no command:)")
    check(args[""] in ([], ["run"]), f"{p} sockproxy runs the 'run' subcommand", str(args[""]))
    lhost, lport = host_port(args.get("listen", "127.0.0.1:3000"))
    uhost, uport = host_port(args.get("upstream", "127.0.0.1:3001"))
    ahost, aport = host_port(args.get("admin", "0.0.0.0:9901"))
    drain = float(args.get("drain-timeout", 25))
    check(lport == NGINX_PROXIES_TO and lhost in LOOPBACK,
          f"{p} sockproxy listens on loopback:{NGINX_PROXIES_TO}, where nginx proxies to", f"{lhost}:{lport}")
    check(uhost in LOOPBACK and uport not in (None, lport), f"{p} sockproxy forwards to Theia on loopback",
          f"{uhost}:{uport}")
    check(ahost in ("0.0.0.0", "[::]", "") and aport, f"{p} admin listener on all addresses (kubelet and GFE probes)",
          f"{ahost}:{aport}")

    # --- original containers unchanged, but for Theia's port ----------------------------------
    base_main = {c["name"]: c for c in base_pod.get("containers") or []}
    for cname, bc in base_main.items():
        rc = next((c for c in containers if c["name"] == cname), None)
        expected = copy.deepcopy(bc)
        for e in expected.get("env") or []:
            if e["name"] == THEIA_PORT_ENV:
                e["value"] = str(uport)
        check(rc == expected, f"{p} container '{cname}' unchanged except {THEIA_PORT_ENV}={uport}",
              json.dumps({"rendered": rc, "expected": expected}, sort_keys=True))
    theia = env_map(next((c for c in containers if c["name"] == MAIN), {})).get(THEIA_PORT_ENV, {})
    check(theia.get("value") == str(uport), f"{p} Theia moved to {uport}, the port sockproxy forwards to",
          str(theia))
    check([c for c in containers if c["name"] not in base_main] == in_main,
          f"{p} no container added but sockproxy")
    check([c for c in inits if c["name"] != SIDECAR] == (base_pod.get("initContainers") or []),
          f"{p} the base's initContainers unchanged")
    rest = {k: v for k, v in pod.items() if k not in ("containers", "initContainers", "terminationGracePeriodSeconds")}
    base_rest = {k: v for k, v in base_pod.items() if k not in ("containers", "initContainers", "terminationGracePeriodSeconds")}
    check(rest == base_rest, f"{p} rest of the pod spec unchanged", json.dumps([rest, base_rest]))
    check({k: v for k, v in dep["spec"].items() if k != "template"}
          == {k: v for k, v in base_dep["spec"].items() if k != "template"},
          f"{p} Deployment spec (replicas, selector, strategy) unchanged")
    check(dep["spec"]["template"]["metadata"].get("labels") == base_dep["spec"]["template"]["metadata"].get("labels"),
          f"{p} pod labels unchanged (Service selector still matches)")

    # --- downward API ----------------------------------------------------------------------
    env = env_map(sc)
    for var, field in (("POD_NAME", "metadata.name"), ("POD_IP", "status.podIP")):
        got = ((env.get(var) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        check(got == field, f"{p} env {var} from the downward API ({field})", str(env.get(var)))

    # --- ports ---------------------------------------------------------------------------------
    all_ports = [(c["name"], pt) for c in containers + inits for pt in c.get("ports") or []]
    for cname, pt in all_ports:
        if "name" in pt:
            check(iana_svc_name(pt["name"]),
                  f"{p} port name '{pt['name']}' ({cname}) is a valid IANA_SVC_NAME, {len(pt['name'])} <= 15 chars")
    names = [pt["name"] for _, pt in all_ports if "name" in pt]
    check(len(names) == len(set(names)), f"{p} port names unique in the pod", str(names))
    numbers = [pt["containerPort"] for _, pt in all_ports]
    check(len(numbers) == len(set(numbers)), f"{p} containerPorts unique in the pod", str(numbers))
    sc_ports = {pt.get("name"): pt["containerPort"] for pt in sc.get("ports") or []}
    check(aport in sc_ports.values(), f"{p} admin port {aport} declared on sockproxy", str(sc_ports))
    check(lport not in numbers and uport not in numbers and lport != aport and uport != aport,
          f"{p} proxy ({lport}) and Theia ({uport}) ports clash with no declared port or the admin port")

    # --- probes on the admin port ------------------------------------------------------------
    for kind, path, required in (("readinessProbe", "/readyz", True), ("livenessProbe", "/healthz", True),
                                 ("startupProbe", "/healthz", False)):
        pr = sc.get(kind)
        if pr is None:
            check(not required, f"{p} sockproxy has a {kind}")
            continue
        ok = "httpGet" in pr and pr["httpGet"].get("path") == path and probe_port(pr, sc_ports) == aport \
            and pr["httpGet"].get("scheme", "HTTP") == "HTTP"
        check(ok, f"{p} {kind}: GET {path} on the admin port {aport}", str(pr))
    check(not any("exec" in (sc.get(k) or {}) for k in ("readinessProbe", "livenessProbe", "startupProbe"))
          and not any("exec" in (h or {}) for h in (sc.get("lifecycle") or {}).values()),
          f"{p} no exec probe or hook (the image has no shell)")

    # --- securityContext, resources, image ---------------------------------------------------
    sec = sc.get("securityContext") or {}
    pod_sec = pod.get("securityContext") or {}
    check(sec.get("runAsNonRoot") is True, f"{p} runAsNonRoot: true")
    check(sec.get("runAsUser") == UID_NONROOT and sec.get("runAsGroup") == UID_NONROOT,
          f"{p} runAsUser/runAsGroup {UID_NONROOT} (the image's USER, numeric so the kubelet can verify it)")
    check(sec.get("readOnlyRootFilesystem") is True, f"{p} readOnlyRootFilesystem: true")
    check(sec.get("allowPrivilegeEscalation") is False, f"{p} allowPrivilegeEscalation: false")
    check(not sec.get("privileged"), f"{p} not privileged")
    check("ALL" in ((sec.get("capabilities") or {}).get("drop") or []) and not (sec.get("capabilities") or {}).get("add"),
          f"{p} capabilities: drop ALL, add none")
    seccomp = (sec.get("seccompProfile") or pod_sec.get("seccompProfile") or {}).get("type")
    check(seccomp == "RuntimeDefault", f"{p} seccompProfile RuntimeDefault", str(seccomp))
    res = sc.get("resources") or {}
    check(all(k in (res.get("requests") or {}) for k in ("cpu", "memory")) and "memory" in (res.get("limits") or {}),
          f"{p} resources: cpu/memory requests and a memory limit", str(res))
    img = sc.get("image", "")
    check(("/" in img and (":" in img.rsplit("/", 1)[-1] or "@sha256:" in img)) and img.rsplit(":", 1)[-1] != "latest",
          f"{p} sockproxy image is a full, tagged reference", img)

    # --- shutdown ----------------------------------------------------------------------------
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > drain + 5, f"{p} terminationGracePeriodSeconds {grace} > drain timeout {drain:g} s + 5 s")

    # --- Service and BackendConfig -------------------------------------------------------------
    svc, base_svc = find(docs, "Service", SERVICE), find(base_docs, "Service", SERVICE)
    bc = find(docs, "BackendConfig", "coditect-backend-config")
    if not check(svc is not None and bc is not None, f"{p} Service and BackendConfig rendered"):
        return sc
    ann = svc["metadata"].get("annotations") or {}
    try:
        ref = json.loads(ann.get("cloud.google.com/backend-config", "null")) or {}
    except json.JSONDecodeError as e:
        ref = {"error": str(e)}
    refs = [ref.get("default")] + list((ref.get("ports") or {}).values())
    check(bc["metadata"]["name"] in refs, f"{p} Service annotation cloud.google.com/backend-config names the BackendConfig",
          str(ann))
    check(json.loads(ann.get("cloud.google.com/neg", "{}")).get("ingress") is True,
          f"{p} Service keeps the NEG annotation (container-native load balancing)")
    svc_wo = copy.deepcopy(svc)
    svc_wo["metadata"]["annotations"].pop("cloud.google.com/backend-config", None)
    check(svc_wo == base_svc, f"{p} Service unchanged but for the backend-config annotation")
    sel = svc["spec"]["selector"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in sel.items()), f"{p} Service selector matches the pods")
    main_ports = {pt.get("name"): pt["containerPort"] for c in containers if c["name"] == MAIN for pt in c.get("ports") or []}
    for sp in svc["spec"]["ports"]:
        tp = sp.get("targetPort", sp["port"])
        tp = main_ports.get(tp) if isinstance(tp, str) else tp
        check(tp in main_ports.values(), f"{p} Service port {sp['port']} still targets nginx in '{MAIN}' ({tp})")
    spec = bc["spec"]
    check(3600 <= spec.get("timeoutSec", 30) <= 86400,
          f"{p} H6: BackendConfig timeoutSec {spec.get('timeoutSec', 30)} in [3600, 86400] (websocket lifetime)")
    dts = (spec.get("connectionDraining") or {}).get("drainingTimeoutSec")
    check(dts is not None and drain <= dts < grace,
          f"{p} H5: connectionDraining {dts} s >= sockproxy drain {drain:g} s and < grace period {grace} s")
    aff = (spec.get("sessionAffinity") or {}).get("affinityType")
    check(aff in ("GENERATED_COOKIE", "CLIENT_IP"), f"{p} H2: load-balancer session affinity {aff}")
    hc = spec.get("healthCheck") or {}
    check(hc.get("type", "HTTP") == "HTTP" and hc.get("port") == aport and hc.get("requestPath") == "/healthz",
          f"{p} H3: GKE health check GET /healthz on sockproxy's admin port {aport} (200 while running)", str(hc))
    check(aport in sc_ports.values(), f"{p} health-check port {hc.get('port')} is a declared containerPort")
    return sc


def main(argv):
    base, out, overlays = None, None, []
    it = iter(argv)
    for a in it:
        if a == "--base":
            base = next(it)
        elif a == "--out":
            out = pathlib.Path(next(it))
        elif "=" in a:
            overlays.append(tuple(a.split("=", 1)))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if not base or not overlays:
        print(__doc__, file=sys.stderr)
        return 2
    base_docs = load(base)
    sidecars, rendered = {}, {}
    for name, path in overlays:
        rendered[name] = load(path)
        sc = check_overlay(name, rendered[name], base_docs)
        if sc is not None:
            sidecars[name] = sc
            if out:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{name}.sockproxy.json").write_text(json.dumps(sc, indent=2))
    check(any("native" in n for n, _ in overlays), "a native-sidecar overlay was checked")
    if len(sidecars) > 1:
        names = sorted(sidecars)
        strip = lambda c: {k: v for k, v in c.items() if k != "restartPolicy"}  # noqa: E731
        first = strip(sidecars[names[0]])
        check(all(strip(sidecars[n]) == first for n in names),
              f"sockproxy container identical in {', '.join(names)} (but restartPolicy)")
        for kind in ("BackendConfig", "Service"):
            objs = [[d for d in rendered[n] if d["kind"] == kind] for n in names]
            check(all(o == objs[0] for o in objs), f"{kind} identical in {', '.join(names)}")
    print(f"{failures} failed" if failures else "all assertions hold")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Validate every BackendConfig in rendered manifests against k8s/schemas/backendconfig-v1.schema.json.

kubernetes-validate skips custom resources, so this covers the GKE BackendConfig:
    validate_backendconfig.py RENDERED.yaml [...]     # exit 1 on any error
    validate_backendconfig.py --self-test RENDERED.yaml
--self-test also proves the schema is not vacuous: broken copies of each BackendConfig
(wrong enum, out-of-range values, unknown fields, cross-field rules) must all be rejected.
Needs PyYAML and jsonschema (both come with kubernetes-validate).
"""
import copy
import json
import pathlib
import sys

import jsonschema
import yaml

SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "schemas" / "backendconfig-v1.schema.json"


def extra_rules(doc):
    """Cross-field rules JSON Schema cannot state."""
    errors = []
    spec = doc.get("spec") or {}
    hc = spec.get("healthCheck") or {}
    if "timeoutSec" in hc and "checkIntervalSec" in hc and hc["timeoutSec"] > hc["checkIntervalSec"]:
        errors.append("spec.healthCheck.timeoutSec must not exceed checkIntervalSec")
    cp = (spec.get("cdn") or {}).get("cachePolicy") or {}
    if cp.get("queryStringBlacklist") and cp.get("queryStringWhitelist"):
        errors.append("spec.cdn.cachePolicy: queryStringBlacklist and queryStringWhitelist are exclusive")
    if (spec.get("iap") or {}).get("enabled") and (spec.get("cdn") or {}).get("enabled"):
        errors.append("spec: iap and cdn cannot both be enabled")
    sa = spec.get("sessionAffinity") or {}
    if "affinityCookieTtlSec" in sa and sa.get("affinityType") != "GENERATED_COOKIE":
        errors.append("spec.sessionAffinity.affinityCookieTtlSec only applies to GENERATED_COOKIE")
    return errors


def errors_of(validator, doc):
    errs = [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]
    return errs + extra_rules(doc)


def broken_copies(doc):
    """(description, mutated document) pairs that a working schema must reject."""
    def mutate(fn):
        d = copy.deepcopy(doc)
        fn(d["spec"])
        return d
    return [
        ("affinityType COOKIE", mutate(lambda s: s.setdefault("sessionAffinity", {}).update(affinityType="COOKIE"))),
        ("affinityCookieTtlSec 86401", mutate(lambda s: s.setdefault("sessionAffinity", {}).update(
            affinityType="GENERATED_COOKIE", affinityCookieTtlSec=86401))),
        ("drainingTimeoutSec 3601", mutate(lambda s: s.update(connectionDraining={"drainingTimeoutSec": 3601}))),
        ("timeoutSec '3600' (string)", mutate(lambda s: s.update(timeoutSec="3600"))),
        ("timeoutSec 0", mutate(lambda s: s.update(timeoutSec=0))),
        ("unknown spec field timeoutSecs", mutate(lambda s: s.update(timeoutSecs=30))),
        ("unknown healthCheck field path", mutate(lambda s: s.setdefault("healthCheck", {}).update(path="/healthz"))),
        ("healthCheck type TCP", mutate(lambda s: s.setdefault("healthCheck", {}).update(type="TCP"))),
        ("healthCheck requestPath without /", mutate(lambda s: s.setdefault("healthCheck", {}).update(requestPath="healthz"))),
        ("healthCheck port 70000", mutate(lambda s: s.setdefault("healthCheck", {}).update(port=70000))),
        ("healthCheck timeout > interval", mutate(lambda s: s.setdefault("healthCheck", {}).update(
            checkIntervalSec=5, timeoutSec=10))),
        ("logging sampleRate 2", mutate(lambda s: s.update(logging={"enable": True, "sampleRate": 2}))),
        ("wrong apiVersion", dict(copy.deepcopy(doc), apiVersion="cloud.google.com/v1beta2")),
    ]


def main(argv):
    self_test = "--self-test" in argv
    paths = [a for a in argv if a != "--self-test"]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    failed = False
    for path in paths:
        docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
        bcs = [d for d in docs if d.get("kind") == "BackendConfig"]
        if not bcs:
            print(f"FAIL {path}: no BackendConfig in the rendered output")
            failed = True
        for doc in bcs:
            name = (doc.get("metadata") or {}).get("name", "?")
            errs = errors_of(validator, doc)
            if errs:
                failed = True
                for e in errs:
                    print(f"FAIL {path}: BackendConfig {name}: {e}")
            else:
                print(f"ok   {path}: BackendConfig {name} matches {SCHEMA.name}")
            if self_test:
                for what, bad in broken_copies(doc):
                    if errors_of(validator, bad):
                        print(f"ok   self-test: rejects {what}")
                    else:
                        failed = True
                        print(f"FAIL self-test: schema accepts {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Validates deploy/k8s/raftmq.yaml: every resource against the Kubernetes
API schema (kubernetes-validate, strict: no unknown fields), then what the
cluster needs of it: a headless service that publishes pods before they are
ready, a StatefulSet of three with a claim per pod, readiness and liveness
by `raftmq-node health`, a preStop hand-off, peers for every ordinal, and a
disruption budget that keeps a quorum.

    pip install kubernetes-validate==1.37.0
    python3 deploy/k8s/check.py              # exit 1 naming what is wrong
    python3 deploy/k8s/check.py --self-test  # each check fails on a broken copy
"""

import copy
import sys
from pathlib import Path

import kubernetes_validate
import yaml

MANIFEST = Path(__file__).with_name("raftmq.yaml")
KUBERNETES_VERSION = "1.30.0"


def by_kind(documents):
    found = {}
    for doc in documents:
        found.setdefault(doc["kind"], []).append(doc)
    return found


def problems(documents):
    """Everything wrong with the manifest, as sentences."""
    wrong = []
    for doc in documents:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            wrong.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.message}")
    kinds = by_kind(documents)
    sets = kinds.get("StatefulSet", [])
    if len(sets) != 1:
        return wrong + ["one StatefulSet expected"]
    statefulset = sets[0]["spec"]
    replicas = statefulset.get("replicas", 1)
    if replicas != 3:
        wrong.append(f"the StatefulSet runs {replicas} replicas, not 3")
    headless = [
        s for s in kinds.get("Service", [])
        if s["metadata"]["name"] == statefulset.get("serviceName")
    ]
    if not headless or headless[0]["spec"].get("clusterIP") != "None":
        wrong.append("the StatefulSet's service is not headless (clusterIP: None)")
    elif not headless[0]["spec"].get("publishNotReadyAddresses"):
        wrong.append("the headless service hides pods until ready: they could never elect")
    if not statefulset.get("volumeClaimTemplates"):
        wrong.append("no volumeClaimTemplates: pods would share or lose their data")
    containers = statefulset["template"]["spec"]["containers"]
    node = containers[0]

    def command(probe):
        return " ".join(node.get(probe, {}).get("exec", {}).get("command", []))

    if "health" not in command("readinessProbe") or "--ready" not in command("readinessProbe"):
        wrong.append("readiness is not `raftmq-node health --ready`")
    if "health" not in command("livenessProbe"):
        wrong.append("liveness is not `raftmq-node health`")
    pre_stop = node.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if "hand-off" not in pre_stop:
        wrong.append("no preStop hook running `raftmq-node hand-off`")
    mounts = {m["name"] for m in node.get("volumeMounts", [])}
    claims = {c["metadata"]["name"] for c in statefulset.get("volumeClaimTemplates", [])}
    if not mounts & claims:
        wrong.append("the container mounts none of the claims")
    env = {e["name"]: e.get("value", "") for e in node.get("env", [])}
    peers = env.get("RAFTMQ_PEERS", "")
    name = sets[0]["metadata"]["name"]
    service = statefulset.get("serviceName")
    for ordinal in range(replicas):
        peer = f"{ordinal + 1}={name}-{ordinal}.{service}:"
        if peer not in peers:
            wrong.append(f"RAFTMQ_PEERS lacks pod {name}-{ordinal} as node {ordinal + 1} ({peer}...)")
    if env.get("RAFTMQ_ID_FROM_HOSTNAME") != "true":
        wrong.append("node ids do not come from the pod ordinals (RAFTMQ_ID_FROM_HOSTNAME)")
    budgets = kinds.get("PodDisruptionBudget", [])
    if not budgets or budgets[0]["spec"].get("maxUnavailable") != 1:
        wrong.append("no PodDisruptionBudget with maxUnavailable: 1 (a drain could take a quorum)")
    return wrong


def broken_copies(documents):
    """(what was broken, the broken manifest): each must be caught."""

    def edit(what, change):
        broken = copy.deepcopy(documents)
        change(by_kind(broken))
        return what, broken

    def node(kinds):
        return kinds["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]

    return [
        edit("a field the API does not know", lambda k: node(k).update(readyProbe={})),
        edit("two replicas", lambda k: k["StatefulSet"][0]["spec"].update(replicas=2)),
        edit("a service with a cluster IP", lambda k: k["Service"][0]["spec"].pop("clusterIP")),
        edit("no preStop", lambda k: node(k).pop("lifecycle")),
        edit("readiness without --ready",
             lambda k: node(k)["readinessProbe"]["exec"]["command"].remove("--ready")),
        edit("no claims", lambda k: k["StatefulSet"][0]["spec"].pop("volumeClaimTemplates")),
        edit("a peer missing",
             lambda k: [e.update(value="1=raftmq-0.raftmq:7001") for e in node(k)["env"]
                        if e["name"] == "RAFTMQ_PEERS"]),
        edit("no budget", lambda k: k["PodDisruptionBudget"][0]["spec"].update(maxUnavailable=2)),
    ]


def main():
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    wrong = problems(documents)
    for problem in wrong:
        print(f"{MANIFEST}: {problem}")
    if wrong:
        return 1
    print(f"{MANIFEST}: {len(documents)} resources valid for Kubernetes {KUBERNETES_VERSION}")
    if "--self-test" in sys.argv[1:]:
        missed = [what for what, broken in broken_copies(documents) if not problems(broken)]
        for what in missed:
            print(f"self-test: {what} was not caught")
        if missed:
            return 1
        print(f"self-test: each of {len(broken_copies(documents))} broken copies was caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A Kubernetes API server test double, driven through kubernetes-asyncio like a cluster.

    double = K8sDouble.start()                 # 127.0.0.1, free port, background thread
    kubeconfig = double.kubeconfig(tmp / "kubeconfig")   # bearer token, plain HTTP
    ...                                        # config.load_kube_config(config_file=...)
    double.fail_rollout("apps", "web")         # inject a crash-looping rollout
    double.stop()

Serves namespaces, configmaps, secrets, services, events, pods (core/v1), deployments
(apps/v1, + status and scale), jobs (batch/v1), ingresses (networking.k8s.io/v1) and
horizontalpodautoscalers (autoscaling/v2) with get/list/watch/create/update/patch
(merge, strategic merge, JSON patch, server-side apply)/delete/deletecollection, Status
errors, resourceVersions, generations, managedFields, defaulting and validation; simulated
controllers move Deployment and Job status over time. Modules:

    store.py        objects, writes, deletes with finalizers, watch fan-out
    fields.py       managedFields and server-side apply (conflicts, force, prune)
    patches.py      merge / strategic merge / JSON patch
    defaults.py     defaulting, IP/port allocation, validation
    selectors.py    label and field selectors
    controllers.py  deployment rollouts, jobs, HPAs, namespace termination, failures
    app.py          FastAPI routes, auth, content types, watch streams
    server.py       K8sDouble (uvicorn thread, kubeconfig, failure injection)
"""

from libs.testing.k8s_double.errors import ApiError
from libs.testing.k8s_double.server import K8sDouble

__all__ = ["ApiError", "K8sDouble"]

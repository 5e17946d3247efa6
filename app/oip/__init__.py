"""The Open Inference Protocol v2 (KServe v2, Triton HTTP/REST) beside /v1: tritonclient,
KServe's clients and gateways that speak it reach every model here. ``router`` serves it."""

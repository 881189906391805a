"""One launcher per lab component, shared by the lab (chaos.lab.lab) and the
benchmarks (bench/_stack.py).

Each builds a Launch (chaos.lab.components.launch: argv, environment,
readiness check, log path) from explicit ports, paths and URLs, knowing
nothing of the Lab that composes them:

    hub.hub_registry         the lab hub (distribution with Hub's token auth)
    auth.auth_service        the auth.docker.io emulation
    cdn.blob_cdn             the blob CDN (and cdn.write_secret, its URL signing secret)
    proxy.fault_proxy        mitmdump + addons/hub_chaos.py (PROXY_TUNING, mitmdump_binary)
    mirror.pull_through_mirror  the mirror under test
    push_registry.push_registry the registry sharing the mirror's storage
    registry.serve_registry  `docker-registry serve` with any configuration

The lab's private dockerd has its launcher with the rest of its life
(start, teardown of containerd and mounts) in chaos.lab.dockerd.
"""

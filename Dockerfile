# The volunteer node as a container image, built here from this repository (no registry, nothing
# fetched while building): scripts/build-node-image.sh makes the wheels it installs and runs
#   docker build -t p2pfaas/node:0.1 .
# on the Debian base that `p2pfaas runtime build` makes. Run it with the host's Docker engine and a
# state directory at the same path inside and out (the engine mounts function code and sockets from
# there by host path), the host's network, and the host's cgroups to read what functions use:
#   docker run -d --name p2pfaas-node --network host --cgroupns host \
#     -v /var/run/docker.sock:/var/run/docker.sock -v /var/lib/p2pfaas:/var/lib/p2pfaas \
#     p2pfaas/node:0.1 --anchor https://anchor.example --config /var/lib/p2pfaas/node/node.toml
# (docs/install-node.md). Its limits come from the config file, as for `p2pfaas node run`.
FROM p2pfaas/debian-python3:bookworm
COPY build/wheelhouse/ /tmp/wheelhouse/
RUN set -eu; pip_wheel="$(ls /tmp/wheelhouse/pip-*.whl)"; \
    python3 "$pip_wheel/pip" install --no-index --find-links /tmp/wheelhouse --no-cache-dir \
        --break-system-packages --root-user-action=ignore p2pfaas; \
    rm -rf /tmp/wheelhouse; python3 -m p2pfaas --help >/dev/null
ENV P2PFAAS_HOME=/var/lib/p2pfaas
VOLUME ["/var/lib/p2pfaas"]
ENTRYPOINT ["python3", "-m", "p2pfaas", "node", "run", "--work-dir", "/var/lib/p2pfaas/node", "--executor", "docker"]

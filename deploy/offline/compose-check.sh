#!/usr/bin/env bash
# deploy/compose.yaml brought up for real on a machine with no container registry (this
# project's sandbox): podman and podman-compose from Debian and PyPI, a Debian base image
# made with debootstrap, and local stand-ins for the three public images compose names
# (postgres, redis, the OpenTelemetry collector; deploy/offline/*), tagged with those
# names so compose.yaml runs unchanged. Then a smoke check as a team and an operator
# would make it. Run as root from the repository root:  bash deploy/offline/compose-check.sh
# (`--plan`: print what it would install and change, then exit without doing any of it).
# Where a registry is reachable, `docker compose -f deploy/compose.yaml up --build` is all.
# It leaves the host's own container settings alone: podman reads a private
# containers.conf (CONTAINERS_CONF, under $STATE), never /etc/containers/containers.conf.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OFFLINE=$REPO/deploy/offline
BASE=localhost/gateway-base:bookworm
ROOTFS=${GATEWAY_BASE_ROOTFS:-/var/tmp/gateway-base-rootfs}
PY=${PYTHON:-$REPO/.venv/bin/python}
STATE=${GATEWAY_COMPOSE_CHECK_STATE:-/var/tmp/gateway-compose-check}
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-compose-check-$RANDOM}

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
cat <<PLAN
== what this check installs and changes on this machine
  apt packages:     ${missing[*]:-none (podman, runc and debootstrap are already here)}
  podman-compose:   a virtualenv in /var/tmp/podman-compose (pip, from PyPI), unless there
  podman settings:  $STATE/containers.conf (runc, no default ulimits),
                    through CONTAINERS_CONF; /etc/containers is not touched
  base rootfs:      $ROOTFS (debootstrap from deb.debian.org), unless there
  images:           in root's podman storage: $BASE, llm-gateway:local,
                    and stand-ins tagged docker.io/library/postgres:16.6-bookworm,
                    docker.io/library/redis:7.4-bookworm and
                    docker.io/otel/opentelemetry-collector-contrib:0.116.1 (replacing
                    images of those names)
  compose project:  llm-gateway, brought down with its volumes (down -v) before and after;
                    ports 8081, 8082, 127.0.0.1:9091, :9092, :8889 while it runs
PLAN
[ "${1:-}" = --plan ] && exit 0

[ ${#missing[@]} -eq 0 ] || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
# This VM: crun cannot run on its hybrid cgroups, and it may not raise rlimits. Podman
# (and podman-compose's podman) read these settings from here instead of the host's.
mkdir -p "$STATE"
cat > "$STATE/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$STATE/containers.conf
[ -x /var/tmp/podman-compose/bin/podman-compose ] || {
  python3 -m venv /var/tmp/podman-compose
  /var/tmp/podman-compose/bin/pip install -q "podman-compose>=1.6"
}
COMPOSE=(/var/tmp/podman-compose/bin/podman-compose -f deploy/compose.yaml)

echo "== base image: Debian bookworm's Python 3.11 where the Dockerfile expects python:*-slim"
if ! podman image exists "$BASE"; then
  [ -x "$ROOTFS/usr/bin/python3" ] || debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip bookworm "$ROOTFS" http://deb.debian.org/debian >/dev/null
  ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
  # This sandbox reaches PyPI through a TLS proxy whose CA only the host trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  tar -C "$ROOTFS" -c . | podman import \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" - "$BASE" >/dev/null
fi

echo "== the gateway image, from deploy/Dockerfile"
build=(podman build -q --ignorefile deploy/Dockerfile.dockerignore --build-arg PYTHON_IMAGE="$BASE")
if podman version --format '{{.Client.Version}}' | grep -qE '^4\.[0-5]\.'; then
  # buildah before 1.30 knows no `RUN --network=none`: the builder stage is built (with
  # the network pip needs) from a copy without the flag, then the whole image with no
  # network at all, so the Dockerfile's own offline check still runs offline.
  dockerfile=$(mktemp) && sed 's/^RUN --network=none /RUN /' deploy/Dockerfile > "$dockerfile"
  "${build[@]}" -f "$dockerfile" --target builder . >/dev/null
  "${build[@]}" -f "$dockerfile" --network none -t llm-gateway:local . >/dev/null
  rm -f "$dockerfile"
else
  "${build[@]}" -f deploy/Dockerfile -t llm-gateway:local . >/dev/null
fi
echo "built; the build's offline check passed with no network"
podman run --rm --entrypoint sh llm-gateway:local -c \
  'echo "runs as $(id -u):$(id -g)"; if command -v gcc cc; then exit 1; else echo "no compiler"; fi'

echo "== stand-ins for the public images compose.yaml names"
podman build -q --build-arg BASE_IMAGE="$BASE" -t docker.io/library/postgres:16.6-bookworm "$OFFLINE/postgres" >/dev/null
podman build -q --build-arg BASE_IMAGE="$BASE" -t docker.io/library/redis:7.4-bookworm "$OFFLINE/redis" >/dev/null
podman build -q --build-arg BASE_IMAGE="$BASE" -t docker.io/otel/opentelemetry-collector-contrib:0.116.1 "$OFFLINE/otel-collector" >/dev/null

echo "== compose up"
"${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
trap '"${COMPOSE[@]}" down -v >/dev/null 2>&1 || true' EXIT
# podman 4.3 cannot start a container whose dependency is itself a dependent (gateway →
# migrate → postgres): compose creates them, then they start in compose's order by name.
"${COMPOSE[@]}" up -d --no-build >/dev/null 2>&1 || true
p=llm-gateway
podman start ${p}_postgres_1 ${p}_redis_1 ${p}_otel-collector_1 >/dev/null
for _ in $(seq 60); do podman exec ${p}_postgres_1 pg_isready -q -U gateway -d gateway && break; sleep 1; done
podman start ${p}_postgres_1 ${p}_migrate_1 >/dev/null
[ "$(podman wait ${p}_migrate_1)" -eq 0 ] && podman logs ${p}_migrate_1 2>&1 | tail -1
# Named with every container they depend on, or podman 4.3 refuses to start them.
podman start ${p}_postgres_1 ${p}_redis_1 ${p}_otel-collector_1 ${p}_migrate_1 \
  ${p}_gateway-1_1 ${p}_gateway-2_1 >/dev/null
for port in 8081 8082; do
  for _ in $(seq 60); do curl -sf localhost:$port/readyz >/dev/null && break; sleep 1; done
  echo "replica :$port readyz: $(curl -s localhost:$port/readyz)"
done

echo "== as a team: a token from replica 2, the openai SDK against both"
token=$(podman exec ${p}_gateway-2_1 gateway token --team demo 2>/dev/null | tail -1)
"$PY" "$OFFLINE/smoke_client.py" "$token" 8081 8082

echo "== as an operator: traces, metrics, the ledger, the admin plane, a drain"
sleep 2  # the span batcher sends at least once a second
spans=$(podman logs ${p}_otel-collector_1 2>/dev/null | grep -c '"trace_id": "0af7651916cd43dd8448eb211c80319c"')
echo "collector: $spans spans continue the caller's trace"; [ "$spans" -ge 4 ]
curl -s 127.0.0.1:8889/metrics
curl -s localhost:8081/metrics | grep '^gateway_requests_total'
rows=$(podman exec -e PGPASSWORD="$POSTGRES_PASSWORD" ${p}_postgres_1 \
  psql -h 127.0.0.1 -U gateway -d gateway -Atc "select count(*) from usage_ledger")
echo "ledger rows in PostgreSQL: $rows (4 requests answered)"; [ "$rows" -eq 4 ]
admin=$(podman exec ${p}_gateway-1_1 gateway token --team demo --scope gateway:admin 2>/dev/null | tail -1)
echo "admin API on the teams' port: $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin" localhost:8081/admin/teams/demo/usage)"
echo "admin API on the admin port:  $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin" 127.0.0.1:9091/admin/teams/demo/usage)"
podman stop -t 40 ${p}_gateway-2_1 >/dev/null
code=$(podman inspect ${p}_gateway-2_1 --format '{{.State.ExitCode}}')
echo "replica 2 after SIGTERM: exit $code; $(podman logs ${p}_gateway-2_1 2>&1 | grep -c drain_started) drain started"
[ "$code" -eq 0 ]
echo "replica 1 still serves: $(curl -s localhost:8081/readyz)"
echo "compose check: ok"

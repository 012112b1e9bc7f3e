#!/usr/bin/env bash
# Fuzzes the REST API against its OpenAPI document (hyperd/src/api/openapi.yaml) with
# schemathesis: a live hyperd on a temporary root, whose shim is /bin/false (no VM boots), run
# with schemathesis inside a network namespace of their own that has only loopback, so that no
# request hyperd is asked to make (a pull from a fuzzed registry name) can leave the machine.
#
#   scripts/schemathesis.sh              normal run (a few minutes at most)
#   SCHEMATHESIS_LONG=1 scripts/schemathesis.sh   long run (at least 5,000 requests)
#
# Checks: not_a_server_error, status_code_conformance, content_type_conformance,
# response_schema_conformance. Excluded: the routes not built yet (tag not-implemented; each
# only answers 501, which the router test checks) and the hijacked /exec/start and /attach.
# /pod/start and /vm/create, which boot VMs, and /auth, which logs in to a registry, get a
# few examples without not_a_server_error: no VM boots and no registry answers here, and 503
# is their documented answer then.
#
# Needs: python3 with venv, unshare and ip (util-linux, iproute2), root. Builds hyperd and
# hyperctl into their own target directory (SCHEMATHESIS_TARGET_DIR, default
# target/schemathesis), so the shared target's binaries are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

SCHEMATHESIS_VERSION=4.32.5
venv=${SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}
target_dir=$(realpath -m "${SCHEMATHESIS_TARGET_DIR:-$repo/target/schemathesis}")

if [ "${1:-}" = --inside ]; then
  # In the private network namespace: loopback only.
  tmp=$2
  reports=$repo/target/schemathesis-report
  mkdir -p "$reports"
  ip link set lo up
  port=22318
  "$target_dir/debug/hyperd" --root "$tmp/root" --run-dir "$tmp/run" --certs-dir "$tmp/certs" \
    -H "unix://$tmp/h.sock" -H "tcp://127.0.0.1:$port" --shim /bin/false --log warn \
    --docker-hub-host 127.0.0.1:9 \
    >"$tmp/hyperd.log" 2>&1 &
  hyperd_pid=$!
  trap 'kill "$hyperd_pid" 2>/dev/null; wait "$hyperd_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/_ping" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/_ping" >/dev/null || { cat "$tmp/hyperd.log"; exit 1; }

  # The document the daemon serves is the one in the tree.
  "$target_dir/debug/hyperctl" -H "unix://$tmp/h.sock" api-spec -o "$tmp/openapi.yaml"
  cmp "$tmp/openapi.yaml" hyperd/src/api/openapi.yaml

  # A missing required parameter is a 400 naming it; a wrong method is 405 with Allow.
  answer=$(curl -s -X POST -w ' %{http_code}' "http://127.0.0.1:$port/v1.1.0/service/add")
  [ "$answer" = "$(printf 'query parameter podId: required\n 400')" ] || { echo "service/add: $answer" >&2; exit 1; }
  curl -s -o /dev/null -D "$tmp/h405" "http://127.0.0.1:$port/pod/create"
  grep -qi '^HTTP/1.1 405' "$tmp/h405" && grep -qi '^allow: POST' "$tmp/h405" || { cat "$tmp/h405" >&2; exit 1; }

  if [ -n "${SCHEMATHESIS_LONG:-}" ]; then examples=400; vm_examples=10; else examples=25; vm_examples=3; fi
  export PYTHONPATH=$repo/scripts SCHEMATHESIS_HOOKS=schemathesis_hooks
  # schemathesis keeps a cache in its working directory: the temporary one, not the tree.
  cd "$tmp"
  common=(--url "http://127.0.0.1:$port" --workers 1 --request-timeout 20
          --phases examples,coverage,fuzzing --seed "${SCHEMATHESIS_SEED:-20261129}"
          --suppress-health-check all --warnings off --no-color)
  status=0
  "$venv/bin/st" run "$tmp/openapi.yaml" "${common[@]}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-tag not-implemented \
    --exclude-path /exec/start --exclude-path /attach \
    --exclude-path /pod/start --exclude-path /vm/create --exclude-path /auth \
    --max-examples "$examples" \
    --report har --report-har-path "$reports/main.har" || status=1
  "$venv/bin/st" run "$tmp/openapi.yaml" "${common[@]}" \
    --checks status_code_conformance,content_type_conformance,response_schema_conformance \
    --include-path /pod/start --include-path /vm/create --include-path /auth \
    --max-examples "$vm_examples" \
    --report har --report-har-path "$reports/vm.har" || status=1
  python3 - "$reports/main.har" "$reports/vm.har" <<'EOF'
import collections, json, sys, urllib.parse
by_status = collections.Counter()
by_route = collections.defaultdict(collections.Counter)
for path in sys.argv[1:]:
    try:
        entries = json.load(open(path))["log"]["entries"]
    except (OSError, ValueError, KeyError):
        continue
    for e in entries:
        status = e["response"]["status"]
        route = e["request"]["method"] + " " + urllib.parse.urlsplit(e["request"]["url"]).path
        by_status[status] += 1
        by_route[route][status] += 1
for route in sorted(by_route):
    print(f"  {route}: " + ", ".join(f"{s}×{n}" for s, n in sorted(by_route[route].items())))
print(f"schemathesis: {sum(by_status.values())} requests (" +
      ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())) + ")")
EOF
  if grep -q "panicked" "$tmp/hyperd.log"; then
    echo "schemathesis: hyperd panicked:" >&2
    grep -A5 panicked "$tmp/hyperd.log" >&2
    status=1
  fi
  exit "$status"
fi

# Set-up: the virtualenv (once), the binaries.
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv" || {
    # Debian's python3 keeps venv in a package of its own.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
CARGO_TARGET_DIR=$target_dir cargo build --quiet -p hyperd --bin hyperd -p hyperctl --bin hyperctl

tmp=$(mktemp -d /tmp/hyst-XXXXXX)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
SCHEMATHESIS_VENV=$venv SCHEMATHESIS_TARGET_DIR=$target_dir \
  unshare --net -- bash "$repo/scripts/schemathesis.sh" --inside "$tmp"

#!/usr/bin/env bash
# End-to-end against a client nobody here wrote (issue 14): the real azure-cli (PyPI `azure-cli`, in a venv cached
# under ${XDG_CACHE_HOME:-~/.cache}/acr-autoattach/azcli-venv) drives `azure-emulator serve --tls` with no route
# off the machine (as root: a network namespace with only loopback), telemetry off, its configuration in a temp
# folder. Checks answers, not exit codes: login, aks show, acr show, aks update --attach-acr on a legacy and an ABAC
# registry (then acr-autoattach verify judges az's assignment), acr-autoattach reconcile (then az role assignment
# list names the tool's role), aks update --detach-acr, role assignment create/delete by assignee. Prints the
# azure-cli version and how many requests each az command made.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

venv="${AZCLI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-autoattach/azcli-venv}"
profile="${AZCLI_E2E_PROFILE:-debug}"

if [ "${1:-}" != "--inside" ]; then
  # Outside the namespace: what needs the package registries (pip, cargo), then the run itself.
  if ! "$venv/bin/az" version >/dev/null 2>&1; then
    echo "installing azure-cli into $venv (cached for the next run)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check azure-cli
  fi
  build=(cargo build --quiet -p azure-emulator -p acr-autoattach --bins)
  [ "$profile" = release ] && build+=(--release)
  "${build[@]}"
  target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  export AZCLI_E2E_BIN="$target_dir/$profile"
  if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; then
    echo "running in a network namespace with only loopback"
    exec unshare --net -- bash -c 'ip link set lo up && exec bash "$0" --inside' "${BASH_SOURCE[0]}"
  fi
  echo "not root (or no unshare/ip): running without a network namespace; azure-cli only talks to loopback anyway"
  exec bash "${BASH_SOURCE[0]}" --inside
fi

# --- inside: only loopback from here on ---------------------------------------------------------------------------
bin="${AZCLI_E2E_BIN:?}"
work="$(mktemp -d -t e2e-azcli.XXXXXX)"
emu_pid=""
cleanup() {
  if [ -n "$emu_pid" ] && kill -0 "$emu_pid" 2>/dev/null; then
    kill -INT "$emu_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$emu_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$emu_pid" 2>/dev/null || true
    wait "$emu_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export AZURE_CONFIG_DIR="$work/azure"
export AZURE_CORE_COLLECT_TELEMETRY=false
export AZURE_CORE_NO_COLOR=true
export AZURE_CORE_SURVEY_MESSAGE=false
export AZURE_EXTENSION_USE_DYNAMIC_INSTALL=no
export AZURE_CORE_OUTPUT=json

az_version="$("$venv/bin/az" version --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["azure-cli"])')"
echo "azure-cli $az_version"

"$bin/azure-emulator" serve --tls --tls-dir "$work/tls" --cluster-provisioning-ms 300 \
  --principal-replication-ms 0 >"$work/emu.env" 2>"$work/emu.log" &
emu_pid=$!
for _ in $(seq 1 100); do grep -q '^ready$' "$work/emu.env" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready$' "$work/emu.env" || { echo "the emulator did not start" >&2; cat "$work/emu.log" >&2; exit 1; }
# shellcheck disable=SC1090
eval "$(grep '^export ' "$work/emu.env")"
ARM="$AUTOATTACH_ARM_ENDPOINT"
CA="$AZURE_EMULATOR_CA_FILE"

# A small JSON helper (no jq): `json EXPR` evaluates EXPR with `d` = the JSON read from stdin.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); r=($1); print(r if isinstance(r,str) else json.dumps(r))"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # expect DESCRIPTION ACTUAL EXPECTED
  if [ "$2" != "$3" ]; then fail "$1: got '$2', expected '$3'"; fi
  echo "ok: $1"
}

# Control API and ARM as the emulator's admin (a person building the estate), over the same TLS.
ctl() { python3 - "$CA" "$ARM" "$@" <<'PY'
import json, ssl, sys, urllib.request
ca, base, method, path = sys.argv[1:5]
body = sys.argv[5] if len(sys.argv) > 5 else None
token = sys.argv[6] if len(sys.argv) > 6 else None
req = urllib.request.Request(base + path, method=method, data=body.encode() if body else None)
req.add_header("content-type", "application/json")
if token:
    req.add_header("authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=30) as r:
        text = r.read().decode()
except urllib.error.HTTPError as e:
    text = e.read().decode()
    print(f"HTTP {e.code} {method} {path}: {text}", file=sys.stderr)
    sys.exit(1)
print(text or "{}")
PY
}
info="$(ctl GET /_emulator/info)"
S="$(echo "$info" | json 'd["subscriptions"][0]["id"]')"
TENANT="$(echo "$info" | json 'd["tenantId"]')"
ADMIN="$(echo "$info" | json 'd["adminPrincipalId"]')"
TOKEN="$(ctl POST /_emulator/tokens "{\"objectId\":\"$ADMIN\"}" | json 'd["access_token"]')"
arm() { ctl "$1" "$2" "${3:-}" "$TOKEN"; }
SUB="/subscriptions/$S"
RG_APPS="$SUB/resourceGroups/apps"
RG_PLAT="$SUB/resourceGroups/platform"
arm PUT "$RG_APPS?api-version=2024-11-01" '{"location":"westeurope"}' >/dev/null
arm PUT "$RG_PLAT?api-version=2024-11-01" '{"location":"westeurope"}' >/dev/null
for reg in acrlegacy:LegacyRegistryPermissions acrabac:AbacRepositoryPermissions; do
  arm PUT "$RG_PLAT/providers/Microsoft.ContainerRegistry/registries/${reg%%:*}?api-version=2025-11-01" \
    "{\"location\":\"westeurope\",\"sku\":{\"name\":\"Standard\"},\"tags\":{\"acr-autoattach\":\"*\"},\"properties\":{\"roleAssignmentMode\":\"${reg#*:}\"}}" >/dev/null
done
CLUSTER="$RG_APPS/providers/Microsoft.ContainerService/managedClusters/aks-one"
# Built as the demo and docs/operations.md build clusters: no networkProfile in the PUT.
arm PUT "$CLUSTER?api-version=2026-02-01" \
  '{"location":"westeurope","identity":{"type":"SystemAssigned"},"properties":{"dnsPrefix":"aks-one","agentPoolProfiles":[{"name":"np1","count":1,"vmSize":"Standard_DS2_v2","mode":"System"}]}}' >/dev/null
for _ in $(seq 1 100); do
  state="$(arm GET "$CLUSTER?api-version=2026-02-01" | json 'd["properties"]["provisioningState"]')"
  [ "$state" = Succeeded ] && break
  sleep 0.1
done
KUBELET="$(arm GET "$CLUSTER?api-version=2026-02-01" | json 'd["properties"]["identityProfile"]["kubeletidentity"]["objectId"]')"
LEGACY="$RG_PLAT/providers/Microsoft.ContainerRegistry/registries/acrlegacy"
ABAC="$RG_PLAT/providers/Microsoft.ContainerRegistry/registries/acrabac"
ACRPULL=7f951dda-4ed3-4680-a7ca-43fe172d538d
READER=b93aa761-3e63-49ed-ac28-beffa264f7ac
OWNER=8e3af657-a8ff-443c-a75c-2fe8c4bcb635

# The operator az logs in as: a user-assigned managed identity that is Owner of the subscription.
operator="$(ctl POST /_emulator/principals "{\"displayName\":\"operator\",\"managedIdentityResourceId\":\"$SUB/resourceGroups/ops/providers/Microsoft.ManagedIdentity/userAssignedIdentities/operator\"}")"
OP_OID="$(echo "$operator" | json 'd["objectId"]')"
OP_CLIENT="$(echo "$operator" | json 'd["appId"]')"
ctl POST /_emulator/grants "{\"principalId\":\"$OP_OID\",\"roleDefinitionId\":\"$OWNER\",\"scope\":\"$SUB\"}" >/dev/null

# Assignments for a principal at a scope (exactly there), as "roleGuid description" lines.
assignments_at() {
  arm GET "$1/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&\$filter=principalId%20eq%20'$2'" |
    python3 -c "import json,sys
for a in json.load(sys.stdin)['value']:
    p=a['properties']
    if p['scope'].lower()=='$1'.lower(): print(p['roleDefinitionId'].rsplit('/',1)[1], p.get('description') or '-')"
}

# azure-cli, counting the emulator's requests made by the operator identity per command.
# (az runs inside $(...), so the counts go to a file, not a variable.)
: >"$work/calls.txt"
requests_by_operator() { ctl GET "/_emulator/stats?caller=$OP_OID" | json 'd["total"]'; }
az() {
  local before after out status
  before="$(requests_by_operator)"
  set +e
  out="$(REQUESTS_CA_BUNDLE="$CA" timeout 180 "$venv/bin/az" "$@" --only-show-errors 2>"$work/az.err")"
  status=$?
  set -e
  after="$(requests_by_operator)"
  local label="az $*"
  [ "${#label}" -le 78 ] || label="${label:0:75}..."
  printf '  %-78s %3s requests, exit %s\n' "$label" "$((after - before))" "$status" >>"$work/calls.txt"
  if [ "$status" -ne 0 ]; then
    echo "az $* exited $status:" >&2
    cat "$work/az.err" >&2
    return "$status"
  fi
  printf '%s' "$out"
}

# --- the checks ---------------------------------------------------------------------------------------------------
# The other endpoints come from the emulator's /metadata/endpoints, as from ARM's.
az cloud register --name Emulator --endpoint-resource-manager "$ARM" >/dev/null
az cloud set --name Emulator >/dev/null

login="$(az login --identity --client-id "$OP_CLIENT")"
expect "az login lists the subscription" "$(echo "$login" | json "[s['id'] for s in d if s['id']=='$S'][0]")" "$S"
expect "az login's tenant" "$(echo "$login" | json "[s['tenantId'] for s in d if s['id']=='$S'][0]")" "$TENANT"
az account set --subscription "$S" >/dev/null

aks="$(az aks show --resource-group apps --name aks-one)"
expect "az aks show: kubelet identity" "$(echo "$aks" | json 'd["identityProfile"]["kubeletidentity"]["objectId"]')" "$KUBELET"
expect "az aks show: networkProfile" "$(echo "$aks" | json 'd["networkProfile"]["networkPlugin"]')" azure

acr="$(az acr show --name acrlegacy)"
expect "az acr show: login server" "$(echo "$acr" | json 'd["loginServer"]')" acrlegacy.azurecr.io
expect "az acr show: id" "$(echo "$acr" | json 'd["id"].lower()')" "${LEGACY,,}"

az aks update --resource-group apps --name aks-one --attach-acr acrlegacy >/dev/null
az aks update --resource-group apps --name aks-one --attach-acr acrabac >/dev/null
expect "attach-acr wrote AcrPull at the legacy registry" "$(assignments_at "$LEGACY" "$KUBELET")" "$ACRPULL -"
expect "attach-acr wrote AcrPull at the ABAC registry" "$(assignments_at "$ABAC" "$KUBELET")" "$ACRPULL -"

# acr-autoattach judges az's assignments (verify never writes; exit 1 = not all in order).
set +e
"$bin/acr-autoattach" verify --output json >"$work/verify.json" 2>"$work/verify.err"
verify_status=$?
set -e
[ "$verify_status" -le 1 ] || { cat "$work/verify.err" >&2; fail "acr-autoattach verify exited $verify_status"; }
pair() { python3 -c "import json,sys
d=json.load(open('$work/verify.json'))
for p in d['pairs']:
    if p['registry_id'].lower().endswith('/$1'):
        print(p.get('$2'))" ; }
expect "verify: the legacy pair (az's AcrPull) is compliant" "$(pair acrlegacy status)" compliant
expect "verify: the ABAC pair is missing" "$(pair acrabac status)" missing
abac_reason="$(pair acrabac reason)"
case "$abac_reason" in
  *"AcrPull is not honoured"*"Repository Reader needed"*)
    echo "ok: verify says AcrPull is not honoured on ABAC and Repository Reader is needed: $abac_reason" ;;
  *) fail "verify's ABAC reason: $abac_reason" ;;
esac
# explain walks through the same pair step by step.
set +e
"$bin/acr-autoattach" explain --cluster "$CLUSTER" --registry "$ABAC" >"$work/explain.out" 2>&1
explain_status=$?
set -e
[ "$explain_status" -le 1 ] || { cat "$work/explain.out" >&2; fail "acr-autoattach explain exited $explain_status"; }
if grep -q "AcrPull is not honoured" "$work/explain.out" && grep -q "Repository Reader" "$work/explain.out"; then
  echo "ok: explain says AcrPull is not honoured on ABAC and Repository Reader is needed"
else
  cat "$work/explain.out" >&2
  fail "explain does not say why AcrPull does not count on the ABAC registry"
fi

"$bin/acr-autoattach" reconcile >"$work/reconcile.out" 2>"$work/reconcile.err" ||
  { cat "$work/reconcile.out" "$work/reconcile.err" >&2; fail "acr-autoattach reconcile"; }
listed="$(az role assignment list --scope "$ABAC" --assignee "$KUBELET")"
expect "az role assignment list: the tool's Repository Reader, by name" \
  "$(echo "$listed" | json "sorted(a['roleDefinitionName'] or 'null' for a in d)")" \
  '["AcrPull", "Container Registry Repository Reader"]'
expect "az role assignment list: the tool's mark" \
  "$(echo "$listed" | json "[a['description'] for a in d if a['roleDefinitionName']=='Container Registry Repository Reader'][0].startswith('managed-by: acr-autoattach')")" true

az aks update --resource-group apps --name aks-one --detach-acr acrlegacy >/dev/null
expect "detach-acr removed az's AcrPull at the legacy registry" "$(assignments_at "$LEGACY" "$KUBELET")" ""
# The tag still selects the cluster: the next run puts the pair back (the README's operator section says so).
"$bin/acr-autoattach" reconcile >"$work/reconcile2.out" 2>&1 || { cat "$work/reconcile2.out" >&2; fail "second reconcile"; }
restored="$(assignments_at "$LEGACY" "$KUBELET")"
expect "reconcile restores the legacy pair (AcrPull)" "${restored%% *}" "$ACRPULL"
case "${restored#* }" in
  "managed-by: acr-autoattach"*) echo "ok: the restored assignment carries the tool's mark" ;;
  *) fail "the restored assignment's description: ${restored#* }" ;;
esac
# --detach-acr deletes by principal, role and scope: the tool's own AcrPull too (the README says so).
az aks update --resource-group apps --name aks-one --detach-acr acrlegacy >/dev/null
expect "detach-acr also removes the tool's AcrPull" "$(assignments_at "$LEGACY" "$KUBELET")" ""

user="$(ctl POST /_emulator/principals '{"displayName":"dana","kind":"User"}' | json 'd["objectId"]')"
created="$(az role assignment create --assignee "$user" --role AcrPull --scope "$ABAC")"
expect "az role assignment create --assignee: role" "$(echo "$created" | json 'd["roleDefinitionId"].rsplit("/",1)[1]')" "$ACRPULL"
expect "az role assignment create --assignee: stored" "$(assignments_at "$ABAC" "$user")" "$ACRPULL -"
az role assignment delete --assignee "$user" --role AcrPull --scope "$ABAC" >/dev/null
expect "az role assignment delete --assignee --role --scope" "$(assignments_at "$ABAC" "$user")" ""

echo
echo "azure-cli $az_version against azure-emulator serve --tls: requests per command (operator identity)"
cat "$work/calls.txt"
echo "e2e-azcli: all checks passed"

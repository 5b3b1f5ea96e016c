# Shared by scripts/dev, scripts/test, scripts/bench and scripts/kavach. Source it; don't run it.
# Everything it installs lives in this repo (.venv, target/) or comes from the package registries.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STATE="$ROOT/.kavach"
mkdir -p "$STATE"

export SAM_CLI_TELEMETRY=0

# The local stack never talks to real AWS: dummy credentials, one region, the emulator's endpoint.
use_local_aws() {
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=ap-south-1 AWS_DEFAULT_REGION=ap-south-1
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_PROFILE AWS_SESSION_TOKEN
}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Creates .venv and installs scripts/requirements.txt when missing or changed.
ensure_python_tools() {
  command -v python3 >/dev/null || die "python3 is required (Debian: apt-get install python3 python3-venv)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  local stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum "$ROOT/scripts/requirements.txt" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python tools (moto, aws-sam-cli, cargo-lambda, ziglang) into .venv"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements.txt" \
      || die "pip install failed"
    echo "$want" > "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

ensure_rust() {
  command -v cargo >/dev/null || die "cargo is required (rustup.rs)"
}

# cargo-deny, for the dependency audit: built from crates.io at a pinned version (with its own
# Cargo.lock, --locked) into .kavach/tools, once per checkout. 0.20.2 needs rustc 1.88 or newer.
CARGO_DENY_VERSION=0.20.2
ensure_cargo_deny() {
  local bin="$STATE/tools/bin/cargo-deny"
  if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
    export PATH="$STATE/tools/bin:$PATH"; return
  fi
  say "building cargo-deny $CARGO_DENY_VERSION from crates.io into $STATE/tools (once)"
  cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION" --root "$STATE/tools" \
    --target-dir "$STATE/tools/build" || die "cargo install cargo-deny $CARGO_DENY_VERSION failed"
  rm -rf "$STATE/tools/build"
  export PATH="$STATE/tools/bin:$PATH"
}

# dependency_audit [live]: cargo-deny's advisories, licences, bans and sources checks of Cargo.lock
# (policy in deny.toml). Offline by default, against the dated RustSec snapshot beside the checkout
# (../shared/advisory-db, or KAVACH_ADVISORY_SNAPSHOT); `live` fetches the current database instead
# (the weekly workflow). cargo-deny only opens a git checkout, so the snapshot is copied into a
# throwaway repository committed at the snapshot's date: cargo-deny then sees the database's real
# age and refuses one past deny.toml's maximum-db-staleness.
dependency_audit() {
  ensure_cargo_deny
  # cargo-deny accepts a bare id or an empty reason; the policy does not.
  python3 - "$ROOT/deny.toml" <<'PY' || die "deny.toml: every advisories.ignore entry needs { id = \"…\", reason = \"why\" }"
import sys, tomllib
ignores = tomllib.load(open(sys.argv[1], "rb")).get("advisories", {}).get("ignore", [])
bare = [entry for entry in ignores if not (isinstance(entry, dict) and str(entry.get("reason", "")).strip())]
for entry in bare:
    print(f"deny.toml: ignore {entry!r} has no written reason", file=sys.stderr)
sys.exit(1 if bare else 0)
PY
  if [ "${1:-}" = live ]; then
    say "dependency audit: cargo-deny $CARGO_DENY_VERSION against the live RustSec database"
    (cd "$ROOT" && KAVACH_ADVISORY_DB_ROOT="$STATE/advisory-dbs-live" cargo deny --locked check --hide-inclusion-graph) || die "dependency audit failed (see docs/operations.md)"
    return
  fi
  local snapshot taken
  snapshot=$(cd "${KAVACH_ADVISORY_SNAPSHOT:-$ROOT/../shared/advisory-db}" 2>/dev/null && pwd) \
    || die "no RustSec snapshot at ${KAVACH_ADVISORY_SNAPSHOT:-$ROOT/../shared/advisory-db}"
  [ -f "$snapshot/SNAPSHOT.md" ] || die "no RustSec snapshot at $snapshot (its SNAPSHOT.md is missing)"
  taken=$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' "$snapshot/SNAPSHOT.md" | head -n 1)
  [ -n "$taken" ] || die "$snapshot/SNAPSHOT.md names no date (YYYY-MM-DD)"
  say "dependency audit: cargo-deny $CARGO_DENY_VERSION, offline, RustSec snapshot of $taken ($snapshot)"
  # The directory cargo-deny derives from deny.toml's db-urls (a hash of the URL, fixed for the
  # pinned version): a wrong name fails the check, it cannot pass it.
  local root="$STATE/advisory-dbs" db="$STATE/advisory-dbs/advisory-db-3157b0e258782691"
  rm -rf "$root"
  mkdir -p "$root"
  cp -R "$snapshot" "$db"
  chmod -R u+w "$db"
  (
    cd "$db" && git init -q && git add -A \
      && GIT_AUTHOR_DATE="${taken}T00:00:00Z" GIT_COMMITTER_DATE="${taken}T00:00:00Z" \
        git -c user.name=kavach -c user.email=kavach@localhost -c commit.gpgsign=false \
        commit -q -m "RustSec advisory database snapshot of $taken"
  ) || die "could not stage the advisory snapshot in $db"
  touch -d "${taken}T00:00:00Z" "$db/.git/HEAD"
  # Offline is for the advisory database only: cargo-deny reads the crates' own manifests (licences,
  # sources) through `cargo metadata`, so on a fresh clone they are fetched first, as locked.
  (cd "$ROOT" && cargo fetch --locked --quiet) || die "cargo fetch --locked failed: the audit needs every locked crate"
  (cd "$ROOT" && KAVACH_ADVISORY_DB_ROOT="$root" cargo deny --offline --locked check --hide-inclusion-graph) \
    || die "dependency audit failed against the snapshot of $taken (see docs/operations.md)"
}

# Debian's Chromium and its WebDriver, for the browser tests. Installed from the package registry
# when missing; without them the browser tests fail (they never skip).
ensure_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then return; fi
  say "installing chromium and chromium-driver (Debian packages) for the browser tests"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null \
    || die "could not install chromium and chromium-driver (apt-get install chromium chromium-driver)"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() { # port seconds
  local port=$1 tries=$(( ${2:-20} * 10 ))
  for _ in $(seq "$tries"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# How often the emulator writes its snapshot when it keeps state (scripts/dev): after a kill -9,
# writes answered in the last this-many seconds, plus one snapshot's write time, may be lost.
KAVACH_SNAPSHOT_SECONDS="${KAVACH_SNAPSHOT_SECONDS:-1}"

# start_emulator PORT LOGFILE [STATE_DIR]: starts moto's server in the background; sets EMULATOR_PID.
# With STATE_DIR it restores the snapshot there and keeps it current (scripts/emulator.py); without
# it the emulator starts empty and keeps nothing, as scripts/test needs.
start_emulator() {
  local port=$1 log=$2 state_dir=${3:-}
  local state_args=()
  [ -z "$state_dir" ] || state_args=(--state "$state_dir" --snapshot-interval "$KAVACH_SNAPSHOT_SECONDS")
  "$ROOT/scripts/emulator" -H 127.0.0.1 -p "$port" "${state_args[@]}" >"$log" 2>&1 &
  EMULATOR_PID=$!
  local tries=300
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    # It exits at once on a snapshot it refuses (another moto's): say why rather than time out.
    if ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
      grep '^emulator:' "$log" >&2 || tail -n 3 "$log" >&2 || true
      die "the emulator exited at start (see $log)"
    fi
    tries=$((tries - 1))
    [ "$tries" -gt 0 ] || { kill "$EMULATOR_PID" 2>/dev/null || true; die "the emulator did not start on port $port (see $log)"; }
    sleep 0.1
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  [ -n "$state_dir" ] || expect_empty_emulator
}

# expect_empty_emulator: fails unless the emulator at AWS_ENDPOINT_URL holds no table, key or
# secret. A stateless start must be fresh (scripts/test relies on it); this checks it, it does not
# assume it.
expect_empty_emulator() {
  "$VENV/bin/python" - <<'PY' || die "the emulator at $AWS_ENDPOINT_URL was expected to start empty"
import sys
import boto3
tables = boto3.client("dynamodb").list_tables()["TableNames"]
keys = boto3.client("kms").list_keys()["Keys"]
secrets = boto3.client("secretsmanager").list_secrets()["SecretList"]
if tables or keys or secrets:
    sys.exit(f"state found: tables {tables}, {len(keys)} KMS key(s), {len(secrets)} secret(s)")
PY
}

# stop_emulator: a clean stop, which with a state folder writes the final snapshot; waits for it.
stop_emulator() {
  [ -n "${EMULATOR_PID:-}" ] || return 0
  kill -TERM "$EMULATOR_PID" 2>/dev/null || true
  wait "$EMULATOR_PID" 2>/dev/null || true
  EMULATOR_PID=
}

# provision ENVFILE: creates tables, key and secret from template.yaml in the emulator, seals the
# key ring, writes the resolved function environment to ENVFILE and exports it.
provision() {
  local env_file=$1
  "$ROOT/target/debug/kavach" provision --template "$ROOT/template.yaml" --env-file "$env_file" >&2 \
    || die "provisioning from template.yaml failed"
  set -a; . "$env_file"; set +a
}

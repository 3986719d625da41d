#!/usr/bin/env bash
# Conformance harness: runs the reference CLI's end-to-end scenarios
# (e2e/scenario-*/test.sh in the upstream checkout) against mew and prints a
# markdown pass/fail table.
#
# Usage:
#   bench/conformance.sh                 # every scenario
#   bench/conformance.sh 1 2 17          # scenarios by number (or full dir name)
#
# Environment:
#   MODE=mew|upstream   mew (default): every `mew` call goes to $MEW_BIN; no
#                       Node CLI anywhere (the scenarios' agents are still
#                       Node programs).  upstream: everything goes to the
#                       upstream CLI, which gives the baseline.
#   UPSTREAM            upstream checkout, built (default /work/upstream)
#   MEW_BIN             mew binary (default <repo>/target/release/mew)
#   TIMEOUT             seconds per scenario (default 300)
#   RETRIES             reruns of a failed scenario before it counts as failed
#                       (default 0; some upstream scenarios are timing-sensitive)
#   RESULTS             where logs and the table go
#                       (default bench/work/conformance/$MODE, gitignored)
#   JQ                  a jq binary with 1.7+ `-e` semantics; otherwise one is
#                       found or built into bench/.tools (gitignored)
#
# Exit status: 0 when every selected scenario passed, 1 otherwise, 2 on a
# setup problem.

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "${HERE}/.." && pwd)"
UPSTREAM="${UPSTREAM:-/work/upstream}"
MEW_BIN="${MEW_BIN:-${REPO}/target/release/mew}"
MODE="${MODE:-mew}"
TIMEOUT="${TIMEOUT:-300}"
RETRIES="${RETRIES:-0}"
RESULTS="${RESULTS:-${HERE}/work/conformance/${MODE}}"
TOOLS="${HERE}/.tools"

die() { printf 'conformance: %s\n' "$*" >&2; exit 2; }
note() { printf 'conformance: %s\n' "$*" >&2; }

[[ "${TIMEOUT}" =~ ^[1-9][0-9]*$ ]] || die "TIMEOUT must be a positive number of seconds"
[[ "${RETRIES}" =~ ^[0-9]+$ ]] || die "RETRIES must be a number"

case "${MODE}" in
  mew|upstream) ;;
  *) die "MODE must be mew or upstream, not '${MODE}'" ;;
esac

UPSTREAM="$(cd "${UPSTREAM}" 2>/dev/null && pwd)" || die "no upstream checkout at ${UPSTREAM:-?}"
UP_CLI="${UPSTREAM}/dist/cli/index.js"
[[ -f "${UP_CLI}" ]] || die "upstream CLI not built: ${UP_CLI} missing (npm install && npm run build)"
[[ -d "${UPSTREAM}/e2e" ]] || die "no e2e directory in ${UPSTREAM}"
command -v node >/dev/null || die "node not on PATH"
command -v curl >/dev/null || die "curl not on PATH"
if [[ "${MODE}" == mew ]]; then
  [[ -x "${MEW_BIN}" ]] || die "mew binary not found at ${MEW_BIN} (build it, or set MEW_BIN)"
  MEW_BIN="$(cd "$(dirname "${MEW_BIN}")" && pwd)/$(basename "${MEW_BIN}")"
fi

mkdir -p "${RESULTS}" || die "cannot create ${RESULTS}"
RESULTS="$(cd "${RESULTS}" && pwd)"

# --------------------------------------------------------------------------
# jq with 1.7+ semantics.
#
# The scenario helpers call `jq -e 'select(COND)' file.jsonl` and expect
# success when any line matches.  jq 1.6 sets the exit status from the last
# *input*, so a match that is not on the last line reads as failure.  The probe
# below tells the two apart.
# --------------------------------------------------------------------------
jq_is_good() {
  local bin="$1"
  [[ -x "${bin}" ]] || return 1
  printf '{"a":1}\n{"a":2}\n' | "${bin}" -e 'select(.a == 1)' >/dev/null 2>&1 || return 1
  ! printf '{"a":1}\n{"a":2}\n' | "${bin}" -e 'select(.a == 3)' >/dev/null 2>&1 || return 1
  [[ "$(printf '{"a":1}\n{"a":2}\n' | "${bin}" -c 'select(.a == 2)' 2>/dev/null)" == '{"a":2}' ]]
}

# Build the jq CLI from the jq release tarball that PyPI's `jq` bindings ship
# inside their source distribution (the only registry route to real jq >= 1.7
# on Debian 12).  Static, with the vendored oniguruma, installed into
# bench/.tools/bin/jq.
build_jq_from_pypi_sdist() {
  local work="${TOOLS}/build/jq"
  local version="${JQ_PYPI_VERSION:-1.13.0}"
  command -v python3 >/dev/null || return 1
  command -v make >/dev/null || return 1
  command -v cc >/dev/null || command -v gcc >/dev/null || return 1
  rm -rf "${work}"
  mkdir -p "${work}" "${TOOLS}/bin"
  note "building jq from the PyPI jq==${version} source distribution (one-off, ~2 min)"
  python3 -m pip download --quiet --no-deps --no-binary :all: "jq==${version}" -d "${work}" \
    >"${work}/download.log" 2>&1 || return 1
  local sdist
  sdist="$(ls "${work}"/jq-*.tar.gz 2>/dev/null | head -n1)"
  [[ -n "${sdist}" ]] || return 1
  tar -xzf "${sdist}" -C "${work}" || return 1
  local inner
  inner="$(ls "${work}"/jq-*/deps/jq-*.tar.gz 2>/dev/null | head -n1)"
  [[ -n "${inner}" ]] || return 1
  mkdir -p "${work}/src"
  tar -xzf "${inner}" -C "${work}/src" --strip-components=1 || return 1
  (
    cd "${work}/src" &&
      ./configure --prefix="${work}/prefix" --disable-maintainer-mode --disable-docs \
        --disable-shared --enable-static --with-oniguruma=builtin &&
      make -j"$(nproc 2>/dev/null || echo 2)" &&
      make install
  ) >"${work}/build.log" 2>&1 || return 1
  install -m 0755 "${work}/prefix/bin/jq" "${TOOLS}/bin/jq"
}

# Fallback: jaq (a jq clone on crates.io) behind a `jq` name.
build_jaq_from_crates() {
  command -v cargo >/dev/null || return 1
  note "installing jaq from crates.io into ${TOOLS} (fallback)"
  cargo install --quiet --locked --root "${TOOLS}" jaq >"${TOOLS}/jaq-install.log" 2>&1 || return 1
  [[ -x "${TOOLS}/bin/jaq" ]] || return 1
  ln -sf jaq "${TOOLS}/bin/jq"
}

find_jq() {
  local candidate
  for candidate in "${JQ:-}" "${TOOLS}/bin/jq" "$(command -v jq 2>/dev/null || true)"; do
    if [[ -n "${candidate}" ]] && jq_is_good "${candidate}"; then
      printf '%s' "${candidate}"
      return 0
    fi
  done
  if build_jq_from_pypi_sdist && jq_is_good "${TOOLS}/bin/jq"; then
    printf '%s' "${TOOLS}/bin/jq"
    return 0
  fi
  rm -f "${TOOLS}/bin/jq"
  if build_jaq_from_crates && jq_is_good "${TOOLS}/bin/jq"; then
    printf '%s' "${TOOLS}/bin/jq"
    return 0
  fi
  return 1
}

JQ_BIN="$(find_jq)" || die "could not provide a jq with 1.7+ semantics (see ${TOOLS}/build/jq/*.log)"

# --------------------------------------------------------------------------
# Scratch area: the `mew` wrapper and jq first on PATH, one PM2 home per
# scenario (upstream's `space up` runs everything under PM2).
# --------------------------------------------------------------------------
SCRATCH="$(mktemp -d /tmp/mew-conformance.XXXXXX)" || die "mktemp failed"
mkdir -p "${SCRATCH}/bin" "${SCRATCH}/pm2"
ln -s "${JQ_BIN}" "${SCRATCH}/bin/jq"

# Both wrappers log every call to $CONFORMANCE_CALLS and, before a space goes
# down (scenario teardown deletes the workspace right after), copy the
# workspace's logs to $CONFORMANCE_SNAPSHOT for diagnosis.
if [[ "${MODE}" == mew ]]; then
  cat >"${SCRATCH}/bin/mew" <<WRAPPER
#!/usr/bin/env bash
# generated by bench/conformance.sh (MODE=mew): every call -> mew
if [[ -n "\${CONFORMANCE_CALLS:-}" ]]; then
  printf '%s\t%s\tmew %s\n' "\$(date +%T.%N | cut -c1-12)" "\${PWD}" "\$*" >>"\${CONFORMANCE_CALLS}"
fi
if [[ "\${1:-}" == space && "\${2:-}" == down && -n "\${CONFORMANCE_SNAPSHOT:-}" ]]; then
  dir=.
  prev=
  for a in "\$@"; do
    [[ "\${prev}" == --space-dir ]] && dir="\${a}"
    [[ "\${a}" == --space-dir=* ]] && dir="\${a#--space-dir=}"
    prev="\${a}"
  done
  mkdir -p "\${CONFORMANCE_SNAPSHOT}"
  for p in logs .mew/logs .mew/space.yaml init.log workspace.env; do
    [[ -e "\${dir}/\${p}" ]] && cp -R "\${dir}/\${p}" "\${CONFORMANCE_SNAPSHOT}/\$(printf '%s' "\${p#.}" | tr / _)" 2>/dev/null
  done
fi
exec "${MEW_BIN}" "\$@"
WRAPPER
else
  # Upstream's `space up` has PM2 start the gateway as script `mew` found on
  # PATH and loads it into node, as a global npm install would provide; so in
  # this mode the wrapper is itself an ES module that imports the upstream CLI.
  printf '{"type":"module"}\n' >"${SCRATCH}/bin/package.json"
  cat >"${SCRATCH}/bin/mew" <<WRAPPER
#!/usr/bin/env node
// generated by bench/conformance.sh (MODE=upstream): everything -> upstream CLI
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
const cli = ${UP_CLI@Q};
const args = process.argv.slice(2);
const calls = process.env.CONFORMANCE_CALLS;
if (calls) {
  const t = new Date().toISOString().slice(11, 23);
  try { fs.appendFileSync(calls, t + '\t' + process.cwd() + '\tmew ' + args.join(' ') + '\n'); } catch {}
}
const snap = process.env.CONFORMANCE_SNAPSHOT;
if (snap && args[0] === 'space' && args[1] === 'down') {
  let dir = '.';
  args.forEach((a, i) => {
    if (a === '--space-dir' && i + 1 < args.length) dir = args[i + 1];
    if (a.startsWith('--space-dir=')) dir = a.slice(12);
  });
  try {
    fs.mkdirSync(snap, { recursive: true });
    for (const p of ['logs', '.mew/logs', '.mew/space.yaml', 'init.log', 'workspace.env']) {
      const src = path.join(dir, p);
      if (fs.existsSync(src)) fs.cpSync(src, path.join(snap, p.replace(/^\\./, '').replaceAll('/', '_')), { recursive: true });
    }
  } catch {}
}
process.argv = [process.argv[0], cli, ...args];
await import(pathToFileURL(cli).href);
WRAPPER
fi
chmod +x "${SCRATCH}/bin/mew"

export PATH="${SCRATCH}/bin:${PATH}"
export NODE_OPTIONS="--experimental-websocket"

PM2_CLI="${UPSTREAM}/node_modules/pm2/bin/pm2"

# --------------------------------------------------------------------------
# Process hygiene.  Every scenario runs with a unique CONFORMANCE_TAG in its
# environment; whatever still carries that tag after the run (agents, PM2
# daemons, gateways) is ours and gets stopped by pid.
# --------------------------------------------------------------------------
tagged_pids() {
  local tag="$1" workspace="$2" p pid cwd
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [[ "${pid}" == "$$" || "${pid}" == "${BASHPID}" ]] && continue
    if grep -qzxF "CONFORMANCE_TAG=${tag}" "${p}/environ" 2>/dev/null; then
      printf '%s\n' "${pid}"
      continue
    fi
    # Processes that dropped the environment but live in the workspace.
    cwd="$(readlink "${p}/cwd" 2>/dev/null || true)"
    if [[ -n "${workspace}" && ( "${cwd}" == "${workspace}" || "${cwd}" == "${workspace}/"* ) ]]; then
      printf '%s\n' "${pid}"
    fi
  done
}

kill_tagged() {
  local tag="$1" workspace="$2" pids n
  pids="$(tagged_pids "${tag}" "${workspace}")"
  [[ -z "${pids}" ]] && return 0
  n="$(printf '%s\n' "${pids}" | wc -l)"
  # shellcheck disable=SC2086
  kill -TERM ${pids} 2>/dev/null
  for _ in $(seq 1 50); do
    pids="$(tagged_pids "${tag}" "${workspace}")"
    [[ -z "${pids}" ]] && break
    sleep 0.1
  done
  if [[ -n "${pids}" ]]; then
    # shellcheck disable=SC2086
    kill -KILL ${pids} 2>/dev/null
  fi
  printf '%s' "${n}"
}

pm2_kill() {
  local home="$1"
  [[ -f "${home}/pm2.pid" && -f "${PM2_CLI}" ]] || return 0
  PM2_HOME="${home}" timeout 30 node "${PM2_CLI}" kill >/dev/null 2>&1 || true
}

CURRENT_TAG=""
CURRENT_WS=""
CURRENT_PM2=""
on_exit() {
  if [[ -n "${CURRENT_TAG}" ]]; then
    [[ -n "${CURRENT_PM2}" ]] && pm2_kill "${CURRENT_PM2}"
    kill_tagged "${CURRENT_TAG}" "${CURRENT_WS}" >/dev/null
  fi
  rm -rf "${SCRATCH}"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
      printf '%s' "${p}"
      return 0
    fi
  done
  printf '%s' 28123
}

strip_ansi() { tr -d '\000\r' | sed -E 's/\x1b\[[0-9;]*[A-Za-z]//g'; }
cell() { sed -E 's/\|/\\|/g; s/[[:space:]]+$//; s/^[[:space:]]+//' | cut -c1-160; }

# The first failed check of a scenario log: its first ✗ line; failing that, an
# error line printed before teardown; failing that, the last line before it.
# (Logs can hold NUL bytes copied from truncated output logs: hence -a.)
first_failure() {
  local log="$1" body line
  body="$(strip_ansi <"$1" | grep -av '^\[conformance\]' | sed -n '/=== .*Teardown ===/q;p')"
  line="$(strip_ansi <"${log}" | grep -a -m1 '✗')"
  [[ -z "${line}" ]] && line="$(printf '%s\n' "${body}" | grep -a -m1 -E '^[[:space:]]*(error|Error|ERROR)\b')"
  [[ -z "${line}" ]] && line="$(printf '%s\n' "${body}" | grep -a -m1 -E '(^|[^a-z])(error|failed|Failed|FAILED)([^a-z]|$)')"
  [[ -z "${line}" ]] && line="last output: $(printf '%s\n' "${body}" | grep -av '^[[:space:]]*$' | tail -n1)"
  printf '%s\n' "${line}" | cell
}

# --------------------------------------------------------------------------
# Scenario selection.  Upstream's runner skips, under --no-llm, every scenario
# directory that carries a `requires-llm` marker file; the same marker makes
# this harness skip a scenario (we never run ones needing an LLM API key).
# --------------------------------------------------------------------------
mapfile -t ALL < <(find "${UPSTREAM}/e2e" -mindepth 1 -maxdepth 1 -type d -name 'scenario-*' -printf '%f\n' |
  sort -t- -k2,2n -k3)

SELECTED=()
if [[ $# -eq 0 ]]; then
  SELECTED=("${ALL[@]}")
else
  for want in "$@"; do
    matched=0
    for s in "${ALL[@]}"; do
      if [[ "${s}" == "${want}" || "${s}" == "scenario-${want}" || "${s}" == "scenario-${want}-"* ]]; then
        SELECTED+=("${s}")
        matched=1
      fi
    done
    [[ ${matched} -eq 1 ]] || die "no scenario matches '${want}'"
  done
fi

# One run of one scenario; sets rc, secs and leftovers.
run_once() {
  local name="$1" dir="$2" log="$3" ws="$4" port tag pm2home start killed
  port="$(free_port)"
  tag="mew-conformance-$$-${name}"
  pm2home="${SCRATCH}/pm2/${name}"
  rm -rf "${pm2home}"
  mkdir -p "${pm2home}"
  CURRENT_TAG="${tag}"
  CURRENT_WS="${ws}"
  CURRENT_PM2="${pm2home}"

  note "${name}: running (port ${port}, timeout ${TIMEOUT}s)"
  start=$(date +%s)
  (
    cd "${dir}" &&
      exec env CONFORMANCE_TAG="${tag}" \
        CONFORMANCE_CALLS="${RESULTS}/${name}.calls" \
        CONFORMANCE_SNAPSHOT="${RESULTS}/${name}.snapshot" \
        PM2_HOME="${pm2home}" \
        TEST_PORT="${port}" \
        WORKSPACE_DIR="${ws}" \
        timeout -k 15 "${TIMEOUT}" ./test.sh
  ) </dev/null >"${log}" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))

  # Make sure nothing of this scenario survives it.
  leftovers=""
  if [[ -d "${ws}" ]]; then
    env CONFORMANCE_TAG="${tag}" PM2_HOME="${pm2home}" CONFORMANCE_CALLS="${RESULTS}/${name}.calls" \
      CONFORMANCE_SNAPSHOT="${RESULTS}/${name}.snapshot" \
      timeout 60 mew space down --space-dir "${ws}" >>"${RESULTS}/${name}.cleanup.log" 2>&1 || true
  fi
  pm2_kill "${pm2home}"
  killed="$(kill_tagged "${tag}" "${ws}")"
  if [[ -n "${killed}" && "${killed}" != 0 ]]; then
    leftovers="${killed} leftover process(es) killed"
    printf '[conformance] %s\n' "${leftovers}" >>"${log}"
  fi
  if [[ -d "${ws}" ]]; then
    # Teardown did not run to the end; keep the workspace's logs, then clear it.
    mkdir -p "${RESULTS}/${name}.snapshot"
    local p
    for p in logs .mew/logs .mew/space.yaml init.log; do
      [[ -e "${ws}/${p}" ]] && cp -R "${ws}/${p}" "${RESULTS}/${name}.snapshot/$(printf '%s' "${p#.}" | tr / _)" 2>/dev/null
    done
    rm -rf "${ws}"
  fi
  CURRENT_TAG=""
  CURRENT_WS=""
  CURRENT_PM2=""
}

describe_failure() {
  local log="$1" rc="$2" detail
  detail="$(first_failure "${log}")"
  if [[ ${rc} -eq 124 || ${rc} -eq 137 ]]; then
    detail="timeout after ${TIMEOUT}s${detail:+; ${detail}}"
  elif [[ -z "${detail}" ]]; then
    detail="(exit ${rc})"
  elif [[ ${rc} -ne 1 && "${detail}" != *✗* ]]; then
    detail="exit ${rc}; ${detail}"
  fi
  printf '%s' "${detail}"
}

# --------------------------------------------------------------------------
# Run.
# --------------------------------------------------------------------------
{
  printf 'mode: %s\n' "${MODE}"
  printf 'upstream: %s (%s)\n' "${UPSTREAM}" "$(git -C "${UPSTREAM}" rev-parse --short HEAD 2>/dev/null || echo '?')"
  [[ "${MODE}" == mew ]] && printf 'mew: %s (%s)\n' "${MEW_BIN}" "$("${MEW_BIN}" --version 2>/dev/null | head -n1)"
  printf 'jq: %s (%s)\n' "${JQ_BIN}" "$("${JQ_BIN}" --version 2>/dev/null)"
  printf 'node: %s\n' "$(node --version)"
  printf 'started: %s\n' "$(date -Is)"
} >"${RESULTS}/run-info.txt"
note "mode=${MODE}, results in ${RESULTS}"

ROWS=()
PASSED=0
FAILED=0
SKIPPED=0

for name in "${SELECTED[@]}"; do
  dir="${UPSTREAM}/e2e/${name}"
  log="${RESULTS}/${name}.log"
  ws="${dir}/.workspace"
  rm -rf "${RESULTS:?}/${name}".snapshot "${RESULTS}/${name}".try*.snapshot "${RESULTS}/${name}".try*.log \
    "${RESULTS}/${name}.calls" "${RESULTS}/${name}.cleanup.log"

  if [[ -f "${dir}/requires-llm" ]]; then
    ROWS+=("| ${name} | skip | 0 | requires an LLM (requires-llm marker) |")
    SKIPPED=$((SKIPPED + 1))
    note "${name}: skip (requires LLM)"
    continue
  fi
  if [[ ! -x "${dir}/test.sh" ]]; then
    ROWS+=("| ${name} | skip | 0 | no executable test.sh |")
    SKIPPED=$((SKIPPED + 1))
    continue
  fi

  tries=$((RETRIES + 1))
  earlier=""
  for try in $(seq 1 "${tries}"); do
    if [[ ${try} -gt 1 ]]; then
      mv "${log}" "${RESULTS}/${name}.try$((try - 1)).log"
      rm -rf "${RESULTS:?}/${name}.try$((try - 1)).snapshot"
      [[ -d "${RESULTS}/${name}.snapshot" ]] && mv "${RESULTS}/${name}.snapshot" "${RESULTS}/${name}.try$((try - 1)).snapshot"
      rm -f "${RESULTS}/${name}.calls"
    fi
    run_once "${name}" "${dir}" "${log}" "${ws}"
    [[ ${rc} -eq 0 ]] && break
    [[ ${try} -lt ${tries} ]] && earlier="${earlier:+${earlier}; }try ${try}: $(describe_failure "${log}" "${rc}")"
  done

  if [[ ${rc} -eq 0 ]]; then
    result=pass
    PASSED=$((PASSED + 1))
    detail=""
    [[ ${try} -gt 1 ]] && detail="passed on try ${try} (${earlier})"
  else
    result=fail
    FAILED=$((FAILED + 1))
    detail="$(describe_failure "${log}" "${rc}")"
    [[ ${try} -gt 1 ]] && detail="${detail} (all ${tries} tries failed)"
  fi
  [[ -n "${leftovers}" ]] && detail="${detail:+${detail}; }${leftovers}"
  ROWS+=("| ${name} | ${result} | ${secs} | ${detail} |")
  note "${name}: ${result} (${secs}s)"
done

{
  printf '| scenario | result | seconds | first failing check |\n'
  printf '| --- | --- | --- | --- |\n'
  printf '%s\n' "${ROWS[@]}"
  printf '\n'
  if [[ ${SKIPPED} -gt 0 ]]; then
    printf '%d passed, %d failed, %d skipped\n' "${PASSED}" "${FAILED}" "${SKIPPED}"
  else
    printf '%d passed, %d failed\n' "${PASSED}" "${FAILED}"
  fi
} | tee "${RESULTS}/summary.md"

[[ ${FAILED} -eq 0 ]]

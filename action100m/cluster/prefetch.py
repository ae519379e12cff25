"""Every hub file a build needs, fetched once where the hub is reachable, and checked at build start.

Compute nodes of GPU clusters usually have no internet (HF_HUB_OFFLINE=1), while a build loads from the
Hugging Face hub: the V-JEPA 2 checkpoint (`segment.model`), the weights, config and processor of every
backend run as a local transformers model (`kind: transformers`), and the tokenizer that counts refine's
prompt tokens (`refine.prompt.tokenizer`). Backends served over HTTP (`kind: openai`, vLLM) load their
weights in the server job; `--served` lists them too, for the node that runs `vllm serve`. Tiny models
and local directories need nothing.

`action100m prefetch build=paper [key=value ...]` (`prefetch`), on a login node: each of these file sets
(config key → repo, revision, files) is downloaded into the HF cache (HF_HOME / HF_HUB_CACHE as set),
one line per set; a set already cached downloads nothing and says so. `check_build_files`, at build
start before the first video: a set not complete in the cache, when the hub cannot be used
(HF_HUB_OFFLINE=1, `transformers.local_files_only`, or a failed lookup), fails the build in one line
naming the config key, the repo and the prefetch command; then refine's tokenizer is loaded, so the
first refine (after a batch was already segmented and captioned) is not where it goes missing.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from action100m.errors import ConfigError

TOKENIZER, MODEL = "tokenizer", "model"
# What AutoTokenizer reads: its own files, and config.json to learn the model type when the tokenizer
# config does not name its class.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
    "config.json",
)
# ... and what a model and its processor read besides.
MODEL_FILES = (
    *TOKENIZER_FILES,
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
)
SAFETENSORS = ("*.safetensors", "*.safetensors.index.json")
PICKLED = ("pytorch_model*.bin", "pytorch_model.bin.index.json")  # only where a repo has no safetensors
# Top-level files only: subfolders hold other formats of the same weights (gpt-oss's original/ and
# metal/, Llama's original/ checkpoints), tens of GB that from_pretrained never reads.
SUBFOLDERS = ("*/*",)
COMPOSE_TIMEOUT_S = 120  # data_build/build.py --cfg job: imports and composition only
LOOKUP_TIMEOUT_S = 10.0  # a hub lookup at build start: a compute node without a route fails fast


@dataclass(frozen=True)
class FileSet:
    """The files one config key needs: `name` is a hub id, a local directory or a tiny model."""

    key: str  # e.g. "segment.model", "caption.frame_captioner", "refine.prompt.tokenizer"
    name: str
    revision: str | None
    files: str  # TOKENIZER | MODEL
    tiny: bool = False  # built in-process, nothing to fetch
    local_files_only: bool = False  # the backend's transformers.local_files_only: never the hub

    @property
    def local(self) -> bool:
        return not self.tiny and (Path(self.name).expanduser().exists() or _looks_like_path(self.name))

    @property
    def repo(self) -> str:
        """'repo' or 'repo@revision', as the lines name it."""
        return self.name if self.revision is None else f"{self.name}@{self.revision}"

    @property
    def override(self) -> str:
        """The key=value that names this set on a command line."""
        key = self.key if self.key in ("segment.model", "refine.prompt.tokenizer") else f"{self.key}.model"
        return f"{key}={self.name}"


def _looks_like_path(name: str) -> bool:
    # As the transformers backend reads a name: a hub id is "name" or "org/name"; more is a directory.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def _value(setting: Any) -> Any:
    return getattr(setting, "value", setting)  # an Enum's value, whether a dataclass or a DictConfig holds it


def file_sets(cfg: Any, served: bool = False) -> list[FileSet]:
    """The file sets build config `cfg` (a BuildConfig or its DictConfig) loads, in the order it loads
    them; with `served`, also the models of the backends served over HTTP."""
    from action100m.backends import TINY_MODELS

    sets = []
    if cfg.segment.features == "vjepa2":
        sets.append(
            FileSet("segment.model", cfg.segment.model, None, MODEL, tiny=cfg.segment.model == "tiny")
        )
    backends = []
    if cfg.caption.mode == "models":
        backends += [
            (f"caption.{role}", getattr(cfg.caption, role))
            for role in ("frame_captioner", "segment_captioner")
        ]
    llm = _value(cfg.refine.mode) == "llm"
    if llm:
        backends.append(("refine.llm", cfg.refine.llm))
    for key, backend in backends:
        if backend is None:
            continue  # the builder fails on it with its own line
        local_model = _value(backend.kind) == "transformers"
        if local_model or served:
            hub = backend.transformers if local_model else None
            sets.append(
                FileSet(
                    key,
                    backend.model,
                    hub.revision if hub else None,
                    MODEL,
                    tiny=backend.model in TINY_MODELS,
                    local_files_only=bool(hub and hub.local_files_only),
                )
            )
    if llm and cfg.refine.prompt.tokenizer:
        sets.append(FileSet("refine.prompt.tokenizer", cfg.refine.prompt.tokenizer, None, TOKENIZER))
    return sets


def select_files(paths: Iterable[str], files: str) -> list[str]:
    """Which of a repo's files a set of kind `files` needs: top-level config, tokenizer and processor
    files, and for a model its safetensors weights (its pickled weights only where it has none)."""
    names = MODEL_FILES if files == MODEL else TOKENIZER_FILES
    top = [path for path in paths if "/" not in path]
    chosen = [path for path in top if path in names]
    if files == MODEL:
        safetensors = [path for path in top if _matches(path, SAFETENSORS)]
        chosen += safetensors or [path for path in top if _matches(path, PICKLED)]
    return sorted(chosen)


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def lacking(files: str, present: Iterable[str]) -> str | None:
    """What a set of kind `files` cannot do without, when `present` lacks it (None: nothing)."""
    present = set(present)
    if not present & {"tokenizer.json", "tokenizer_config.json", "tokenizer.model"} and files == TOKENIZER:
        return "no tokenizer files"
    if files == MODEL and "config.json" not in present:
        return "no config.json"
    if files == MODEL and not any(_matches(p, (*SAFETENSORS, *PICKLED)) for p in present):
        return "no weights (.safetensors or pytorch_model.bin)"
    return None


def _reason(err: BaseException) -> str:
    from huggingface_hub.errors import DryRunError

    if isinstance(err, DryRunError) and err.__cause__ is not None:
        err = err.__cause__  # it says only that the hub "cannot be accessed"; its cause says why
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _size(nbytes: float) -> str:
    if nbytes < 1000:
        return f"{nbytes:.0f} B"
    for unit in ("kB", "MB", "GB"):
        nbytes /= 1000
        if nbytes < 1000 or unit == "GB":
            break
    return f"{nbytes:.1f} {unit}"


# -- prefetch: where the hub is reachable ---------------------------------------------------------------


def compose_build(overrides: list[str]) -> Any:
    """The build config of `overrides`, as the build command composes it: `data_build/build.py --cfg job`
    prints it (the library does not import the pipeline, whose schema the composition needs). Input and
    output may stay unset: the models do not depend on them."""
    from omegaconf import OmegaConf

    command = [sys.executable, "-m", "data_build.build", "--cfg", "job", "--resolve", *overrides]
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMPOSE_TIMEOUT_S)
    if done.returncode != 0:  # a bad override: Hydra's first and last words, on one line
        said = [line for line in done.stderr.splitlines() if line.strip() and not line[0].isspace()]
        said = [line for line in said if not line.startswith("Set the environment variable")]
        raise ConfigError(" ".join(dict.fromkeys(said[:1] + said[-1:])) or f"cannot compose {overrides}")
    return OmegaConf.create(done.stdout)


def fetch(fileset: FileSet, dry_run: bool = False) -> str:
    """Download what the cache lacks of `fileset`; its one line: what it is, what was downloaded."""
    if fileset.tiny:
        return f"{fileset.key}: {fileset.name}: a tiny model built in-process, nothing to fetch"
    if fileset.local:
        path = Path(fileset.name).expanduser()
        if not path.is_dir():
            raise ConfigError(f"{fileset.key}: no such local directory: {path}")
        return f"{fileset.key}: {path}: a local directory, nothing to fetch"
    from huggingface_hub import constants, snapshot_download

    if constants.is_offline_mode():
        raise ConfigError(
            f"{fileset.key}: {fileset.repo}: HF_HUB_OFFLINE is set; run prefetch where the hub is reachable"
        )
    cache = constants.HF_HUB_CACHE
    wanted = MODEL_FILES if fileset.files == MODEL else TOKENIZER_FILES
    patterns = [*wanted, *SAFETENSORS, *PICKLED] if fileset.files == MODEL else list(wanted)
    try:
        # The listing (and, for files not cached, a HEAD each for their size); nothing downloaded yet.
        listing = snapshot_download(
            fileset.name,
            revision=fileset.revision,
            cache_dir=cache,
            allow_patterns=patterns,
            ignore_patterns=list(SUBFOLDERS),
            dry_run=True,
        )
        chosen = select_files([info.filename for info in listing], fileset.files)
        problem = lacking(fileset.files, chosen)
        if problem:
            raise ConfigError(f"{fileset.key}: {fileset.repo}: {problem} in the repo")
        infos = [info for info in listing if info.filename in chosen]
        todo = [info for info in infos if info.will_download]
        commit = infos[0].commit_hash[:12]
        total = _size(sum(info.file_size or 0 for info in infos))
        head = f"{fileset.key}: {fileset.repo} (commit {commit}): {len(infos)} {fileset.files} files, {total}"
        if dry_run:
            return f"{head}; {len(todo)} to download ({_size(sum(i.file_size or 0 for i in todo))})"
        if not todo:
            return f"{head}, all in the cache: nothing to download"
        snapshot_download(fileset.name, revision=fileset.revision, cache_dir=cache, allow_patterns=chosen)
    except ConfigError:
        raise
    except Exception as err:  # the hub's, the network's or the disk's: one line naming the key and repo
        raise ConfigError(f"{fileset.key}: {fileset.repo}: {_reason(err)}") from err
    return f"{head}; downloaded {len(todo)} ({_size(sum(i.file_size or 0 for i in todo))}) into {cache}"


def prefetch(
    overrides: list[str], dry_run: bool = False, served: bool = False, say: Callable[[str], None] = print
) -> list[str]:
    """`action100m prefetch`: every file set of the build of `overrides`, fetched; returns the lines."""
    sets = file_sets(compose_build(overrides), served)
    lines = []
    for fileset in sets:
        lines.append(fetch(fileset, dry_run))
        say(lines[-1])
    if not sets:
        lines.append("prefetch: this build loads nothing from the hub")
        say(lines[-1])
    return lines


# -- the check at build start --------------------------------------------------------------------------


def missing_files(fileset: FileSet) -> str | None:
    """What the local cache or filesystem lacks of `fileset`, in words; None when it has it all."""
    if fileset.tiny:
        return None
    if fileset.local:
        return None if Path(fileset.name).expanduser().is_dir() else "is no local directory"
    from huggingface_hub import constants, get_cached_repo_tree, try_to_load_from_cache
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    cache = constants.HF_HUB_CACHE

    def cached(filename: str) -> Path | None:
        found = try_to_load_from_cache(fileset.name, filename, cache_dir=cache, revision=fileset.revision)
        return Path(found) if isinstance(found, str) else None

    try:
        # prefetch (snapshot_download) left the repo's listing: exactly which files the set has
        listing = [
            file.path
            for file in get_cached_repo_tree(fileset.name, revision=fileset.revision, cache_dir=cache)
        ]
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        listing = None
    if listing is not None:
        chosen = select_files(listing, fileset.files)
        absent = [name for name in chosen if cached(name) is None]
        if absent:
            more = f", ... ({len(absent) - 3} more)" if len(absent) > 3 else ""
            return f"lacks {len(absent)} of its {len(chosen)} files in the hub cache ({', '.join(absent[:3])}{more})"
        return None
    # No listing (a loader's own downloads filled the cache): what every load of this kind needs.
    anchor = "config.json" if fileset.files == MODEL else "tokenizer_config.json"
    found = cached(anchor) or cached("tokenizer.json")
    if found is None:
        return "is not in the hub cache"
    present = [path.name for path in found.parent.iterdir()]
    problem = lacking(fileset.files, present)
    for index in (name for name in present if name.endswith(".index.json")):
        shards = set(json.loads((found.parent / index).read_text(encoding="utf-8"))["weight_map"].values())
        if shards - set(present):
            problem = f"lacks weight shards of {index} ({', '.join(sorted(shards - set(present))[:3])})"
    return f"is incomplete in the hub cache: {problem}" if problem else None


def prefetch_command(cfg: Any, fileset: FileSet) -> str:
    """The prefetch command for this build: the build's own model overrides when it runs under Hydra
    (data_build/build.py), else its preset and the key of `fileset`."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        kept = [
            override
            for override in HydraConfig.get().overrides.task
            if override.startswith("build=")
            or (
                override.lstrip("+~").startswith(("segment.", "caption.", "refine."))
                and ".http." not in override
            )
        ]
    else:
        kept = [f"build={cfg.preset}", fileset.override]
    return shlex.join(["action100m", "prefetch", *kept])


def check_build_files(cfg: Any, say: Callable[[str], None] | None = None) -> None:
    """At build start, before the first video: every file set of `cfg` is here, or the hub answers for
    it; else a one-line `ConfigError` naming the key, the repo and the prefetch command. Then refine's
    tokenizer is loaded (TokenCounter keeps it for every refine of this process)."""
    from huggingface_hub import HfApi, constants

    say = say or (lambda line: print(line, file=sys.stderr))
    for fileset in file_sets(cfg):
        problem = missing_files(fileset)
        if problem is None:
            continue
        if fileset.local:
            raise ConfigError(f"{fileset.key}: {fileset.name} {problem}")
        if fileset.local_files_only or constants.is_offline_mode():
            why = (
                "transformers.local_files_only=true" if fileset.local_files_only else "HF_HUB_OFFLINE is set"
            )
        else:
            try:
                HfApi().repo_info(fileset.name, revision=fileset.revision, timeout=LOOKUP_TIMEOUT_S)
            except Exception as err:  # noqa: BLE001 - whatever the lookup hit, the build cannot load it
                why = f"the hub lookup failed: {_reason(err)}"
            else:
                say(
                    f"build: {fileset.key}: {fileset.repo} {problem}; the hub answers: it is fetched when loaded"
                )
                continue
        raise ConfigError(
            f"{fileset.key}: {fileset.repo} {problem} and {why}; run `{prefetch_command(cfg, fileset)}` "
            f"where the hub is reachable (same HF_HOME)"
        )
    if _value(cfg.refine.mode) == "llm" and cfg.refine.prompt.tokenizer:
        from action100m.refine.tokens import TokenCounter

        TokenCounter.load(cfg.refine.prompt.tokenizer)

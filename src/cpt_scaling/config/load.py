"""Load, validate and normalise a workflow config.

Validation uses the JSON schema in ``config/schema.yaml``; defaults from the schema are filled in and numbers are
cast to their schema type before anything is hashed, so ``1e-1`` (a string in YAML 1.1), ``0.1`` and an omitted
key with default ``0.1`` all give the same artifact keys. Every error names the config file and the key.
"""

from __future__ import annotations

import copy
import functools
import glob
import importlib.resources
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cpt_scaling.config.decide import resolve_decide
from cpt_scaling.config.hf_metadata import REQUIRED as SHAPE_REQUIRED
from cpt_scaling.config.hf_metadata import checkpoint_positions, read_checkpoint_shape, tokenizer_vocab_size
from cpt_scaling.config.names import GENERAL
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import host_memory, memory, resources
from cpt_scaling.cost.model import FAMILIES
from cpt_scaling.data.docs_io import FORMATS_HELP, document_files, document_format

#: The schema ships as package data ``cpt_scaling/config/schema.yaml``, a symlink to ``config/schema.yaml`` (the one
#: source, which the wheel build copies), so a non-editable install finds it too.
SCHEMA_RESOURCE = "schema.yaml"
YTE_MARKER = "__use_yte__"  # the top-level key that makes Snakemake render a config file as a template
DEFAULT_VOCAB_SIZE = 2048  # the BPE trained on the seeds when tokenizer.vocab_size is not given


@functools.cache
def _schema_text() -> str:
    return importlib.resources.files("cpt_scaling.config").joinpath(SCHEMA_RESOURCE).read_text()


def load_schema() -> dict[str, Any]:
    """The config JSON schema (read once per process; a fresh copy each call, as callers may fill it)."""
    return yaml.safe_load(_schema_text())


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file (safe loader: config can never execute code)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(str(path), "config must be a mapping of keys to values")
    return data


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Refuse config files that are not plain data: Python YAML tags, or Snakemake's YTE templating.

    Snakemake renders a ``--configfile`` that sets ``__use_yte__: true`` as a template whose expressions are
    Python. The ``cpt-scaling`` commands call this before Snakemake reads the files, so such a file never runs
    there; a direct ``snakemake --configfile`` renders it before the Snakefile starts, which then stops with
    this error, so no job ever runs from it.
    """
    for path in paths:
        if YTE_MARKER in read_config_file(path):
            raise InputError(str(path), f"'{YTE_MARKER}' found: templated configs (YTE) are not accepted, "
                                        "a config must be plain YAML data")


def _key_path(path: Any) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts) or "<top level>"


def _fill_and_cast(node: Any, schema: dict[str, Any]) -> Any:
    """Fill schema defaults into ``node`` and cast numeric strings/ints to the schema's number type."""
    types = schema.get("type")
    types = [types] if isinstance(types, str) else (types or [])
    if isinstance(node, str) and ("number" in types or "integer" in types):
        try:
            value = float(node)
        except ValueError:
            return node
        return int(value) if "integer" in types and "number" not in types and value.is_integer() else value
    if isinstance(node, int) and not isinstance(node, bool) and "number" in types:
        return float(node)
    if isinstance(node, float) and types == ["integer"] and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in node and "default" in sub:
                node[name] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for name in list(node):
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                node[name] = _fill_and_cast(node[name], sub)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        return [_fill_and_cast(item, schema["items"]) for item in node]
    return node


def _check_finite(node: Any, where: str, path: tuple = ()) -> None:
    if isinstance(node, float) and not math.isfinite(node):
        raise InputError(where, f"{_key_path(path)}: {node} is not a finite number")
    if isinstance(node, dict):
        for k, v in node.items():
            _check_finite(v, where, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_finite(v, where, (*path, i))


def expand_globs(patterns: list[str], where: str, key: str) -> list[str]:
    """Expand file globs (``**`` recursive; sorted, de-duplicated) and folders that are not saved datasets (every
    document file below them); a pattern that matches no document is an error naming it."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        found: list[str] = []
        for match in matches:
            if not Path(match).exists():
                continue
            kind = document_format(Path(match))
            if kind == "folder":
                found.extend(str(f) for f in document_files(Path(match)))
            elif kind is not None or not glob.has_magic(pattern):
                found.append(match)  # a named file of another format is refused by its reader, naming it
        if not found:
            raise InputError(where, f"{key}: '{pattern}' matches no document file (formats: {FORMATS_HELP})")
        files.extend(m for m in found if m not in files)
    return files


def _resolve_user_labels(cfg: dict[str, Any], where: str) -> None:
    """Expand ``data.pool_labels`` (class -> pool files) and check the labels a user brings: classes of
    ``data.seeds``, files of ``data.pool``, each file under one class, and not both a label column and file
    labels; an existing ``classifier.model`` must be a file."""
    data = cfg["data"]
    labelled: dict[str, str] = {}
    for label, patterns in sorted(data["pool_labels"].items()):
        key = f"data.pool_labels.{label}"
        if label not in data["seeds"]:
            raise InputError(where, f"{key}: unknown class (classes: {', '.join(sorted(data['seeds']))})")
        files = expand_globs(patterns, where, key)
        for f in files:
            if f not in data["pool"]:
                raise InputError(where, f"{key}: '{f}' is not one of the data.pool files")
            if labelled.setdefault(f, label) != label:
                raise InputError(where, f"{key}: '{f}' is already labelled {labelled[f]!r}")
        data["pool_labels"][label] = files
    if labelled and data["label_column"] is not None:
        raise InputError(where, "data.pool_labels: give either data.label_column or per-file labels, not both")
    model = cfg["classifier"]["model"]
    if model is not None and not Path(model).is_file():
        raise InputError(where, f"classifier.model: '{model}' is not a file (an existing fastText model.bin)")


def _check_semantics(cfg: dict[str, Any], where: str) -> None:
    seeds = cfg["data"]["seeds"]
    if GENERAL not in seeds:
        raise InputError(where, "data.seeds: needs a 'general' class (the general mix)")
    for domain in cfg["domains"]:
        if domain not in seeds:
            raise InputError(where, f"domains.{domain}: unknown domain (no seed files under data.seeds.{domain})")
    for name, size in cfg["models"]["sizes"].items():
        if not size["base_checkpoint"] and size["d_model"] % size["n_heads"]:
            raise InputError(where, f"models.sizes.{name}: d_model {size['d_model']} is not divisible by n_heads")
    train = cfg["training"]
    if train["batch_size"] % train["micro_batch_size"]:
        raise InputError(where, "training.batch_size: must be a multiple of training.micro_batch_size")
    step_tokens = train["batch_size"] * cfg["shards"]["seq_len"]
    scratch = any(not size["base_checkpoint"] for size in cfg["models"]["sizes"].values())
    budgets = [("pretrain.tokens", cfg["pretrain"]["tokens"])] if scratch else []  # only pretraining runs read it
    budgets += [(f"cpt.tokens[{i}]", t) for i, t in enumerate(cfg["cpt"]["tokens"])]
    for key, tokens in budgets:
        if tokens < step_tokens or tokens % step_tokens:
            raise InputError(where, f"{key}: {tokens} tokens is not a positive multiple of one optimizer step "
                                    f"(training.batch_size x shards.seq_len = {step_tokens} tokens)")


def _check_sweep_entries(cfg: dict[str, Any], where: str) -> None:
    """Refuse duplicated sweep entries: one model under two size names, unknown split-study domains.

    (Repeated ratios or token budgets in one list break the schema's ``uniqueItems``.) Two names for the same
    architecture and base weights would be the same runs under two labels: the sweep would count them twice.
    """
    seen: dict[str, str] = {}
    for name, size in cfg["models"]["sizes"].items():
        fields = {k: v for k, v in size.items() if k not in ("n_kv_heads", "vocab_size")}
        if fields.get("base_checkpoint"):  # one checkpoint reached through a symlink is still one checkpoint
            fields["base_checkpoint"] = os.path.realpath(fields["base_checkpoint"])
        identity = repr(sorted(fields.items()))
        if identity in seen:
            raise InputError(where, f"models.sizes.{name}: duplicates models.sizes.{seen[identity]} (same "
                                    "architecture and base checkpoint); list each model once")
        seen[identity] = name
    for domain in cfg["studies"]["split"]["domains"] or []:
        if domain not in cfg["domains"]:
            known = ", ".join(cfg["domains"])
            raise InputError(where, f"studies.split.domains: '{domain}' is not one of the domains ({known})")


def _check_paths(cfg: dict[str, Any], where: str) -> None:
    """Local inputs named in config exist (unless a declared identity stands in) and output roots can be written."""
    tok = cfg["tokenizer"]
    if tok["path"] and not tok["path_id"] and not Path(tok["path"]).is_dir():
        raise InputError(where, f"tokenizer.path: '{tok['path']}' is not a directory")
    for name, size in cfg["models"]["sizes"].items():
        ckpt = size.get("base_checkpoint")
        if ckpt and not size.get("base_checkpoint_id") and not Path(ckpt).exists():
            raise InputError(where, f"models.sizes.{name}.base_checkpoint: '{ckpt}' does not exist")
    for key in ("artifacts_dir", "results_dir"):
        existing = Path(cfg[key])
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise InputError(where, f"{key}: '{cfg[key]}' cannot be created: '{existing}' is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(where, f"{key}: '{cfg[key]}' is not writable ('{existing}' is read-only)")


def _resolve_model_shapes(cfg: dict[str, Any], where: str) -> None:
    """Fill each checkpoint size's shape from its ``config.json`` (values in the config must agree) and check
    that every size has the shape keys it needs: a from-scratch size its four, a checkpoint not on disk all the
    cost model uses."""
    for name, size in cfg["models"]["sizes"].items():
        ckpt = size["base_checkpoint"]
        on_disk = bool(ckpt) and (Path(ckpt) / "config.json").is_file()
        if ckpt and not on_disk and Path(ckpt).exists():
            raise InputError(str(Path(ckpt) / "config.json"), f"models.sizes.{name}.base_checkpoint: missing "
                                                              "(not a Hugging Face checkpoint directory)")
        if on_disk:
            try:
                shape = read_checkpoint_shape(ckpt)
            except InputError as exc:
                raise InputError(where, f"models.sizes.{name}.base_checkpoint: {exc}") from None
            for key, value in shape.items():
                if size[key] is not None and size[key] != value:
                    raise InputError(where, f"models.sizes.{name}.{key}: {size[key]!r} in the config, but "
                                            f"{Path(ckpt) / 'config.json'} says {value!r}")
                size[key] = value
            _check_positions(cfg, name, ckpt, where)
            if size["model_type"] not in FAMILIES and size["n_params_non_embedding"] is None:
                from cpt_scaling.train.model import meta_non_embedding_params  # torch: only for such checkpoints

                size["n_params_non_embedding"] = meta_non_embedding_params(Path(ckpt))
            continue
        if ckpt and size["model_type"] not in (None, *FAMILIES) and size["n_params_non_embedding"] is None:
            raise InputError(where, f"models.sizes.{name}.n_params_non_embedding: needed while base_checkpoint "
                                    f"'{ckpt}' is not on disk: model_type {size['model_type']!r} has no parameter "
                                    f"formula (known: {', '.join(sorted(FAMILIES))})")
        needed = [*SHAPE_REQUIRED, "vocab_size"] if ckpt else list(SHAPE_REQUIRED)
        missing = [k for k in needed if size[k] is None]
        if missing:
            why = (f"needed while base_checkpoint '{ckpt}' is not on disk" if ckpt
                   else "needed by a size trained from scratch (or give base_checkpoint)")
            raise InputError(where, f"models.sizes.{name}: {', '.join(missing)} {why}")
        if not ckpt and size["model_type"] not in (None, "llama"):
            raise InputError(where, f"models.sizes.{name}.model_type: from-scratch sizes are Llama-style decoders; "
                                    "for another architecture give a base_checkpoint")


def _check_positions(cfg: dict[str, Any], name: str, ckpt: str, where: str) -> None:
    """Refuse a ``shards.seq_len`` longer than the checkpoint's positions (its config.json's
    ``max_position_embeddings``): the model was never trained on such positions."""
    positions = checkpoint_positions(ckpt)
    seq_len = cfg["shards"]["seq_len"]
    if positions is not None and seq_len > positions[1]:
        raise InputError(where, f"shards.seq_len: {seq_len} is longer than models.sizes.{name}'s {positions[0]} "
                                f"{positions[1]} ({Path(ckpt) / 'config.json'}); use seq_len <= {positions[1]}")


def _resolve_tokenizer_vocab(cfg: dict[str, Any], where: str) -> None:
    """The vocabulary comes from its source of truth: a local tokenizer on disk, else the config (2048 for the
    BPE trained on the seeds when not given)."""
    tok = cfg["tokenizer"]
    if tok["path"] and Path(tok["path"]).is_dir():
        try:
            vocab = tokenizer_vocab_size(Path(tok["path"]))
        except InputError as exc:
            raise InputError(where, f"tokenizer.path: {exc}") from None
        if tok["vocab_size"] is not None and tok["vocab_size"] != vocab:
            raise InputError(where, f"tokenizer.vocab_size: {tok['vocab_size']} in the config, but the tokenizer at "
                                    f"'{tok['path']}' has {vocab} tokens (leave vocab_size out to use it)")
        tok["vocab_size"] = vocab
    elif not tok["path"] and tok["vocab_size"] is None:
        tok["vocab_size"] = DEFAULT_VOCAB_SIZE
    for name, size in cfg["models"]["sizes"].items():
        rows = size["vocab_size"]
        if tok["vocab_size"] is not None and rows is not None and rows < tok["vocab_size"]:
            raise InputError(where, f"models.sizes.{name}.vocab_size: {rows} embedding rows cannot hold the "
                                    f"tokenizer's {tok['vocab_size']} tokens")
        if not size["base_checkpoint"] and rows is None and tok["vocab_size"] is None:
            raise InputError(where, f"tokenizer.vocab_size: needed by the from-scratch size {name} while "
                                    f"tokenizer.path '{tok['path']}' is not on disk")


def normalise_config(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate ``raw`` against the schema, fill defaults, cast types and expand data globs."""
    schema = load_schema()
    cfg = _fill_and_cast(copy.deepcopy(raw), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        raise InputError(where, f"{_key_path(err.absolute_path)}: {err.message}")
    _check_finite(cfg, where)
    _check_paths(cfg, where)
    _resolve_model_shapes(cfg, where)
    _resolve_tokenizer_vocab(cfg, where)
    _check_semantics(cfg, where)
    resources.resolve_processes_per_node(cfg, where)
    memory.check_fits(cfg, where)  # with GPUs: every training job fits cost.gpu_memory_gb
    host_memory.check_host_fits(cfg, where)  # with cost.node_memory_gb: every training job's --mem fits a node
    _check_sweep_entries(cfg, where)
    data = cfg["data"]
    data["seeds"] = {label: expand_globs(p, where, f"data.seeds.{label}") for label, p in data["seeds"].items()}
    data["pool"] = expand_globs(data["pool"], where, "data.pool")
    _resolve_user_labels(cfg, where)
    # Canonical order: a config that only lists the same things in another order gives identical jobs.
    data["seeds"] = dict(sorted(data["seeds"].items()))
    cfg["domains"] = dict(sorted(cfg["domains"].items()))
    cfg["models"]["sizes"] = dict(sorted(cfg["models"]["sizes"].items()))
    for domain in cfg["domains"].values():
        domain["ratios"] = sorted(domain["ratios"])
    cfg["cpt"]["tokens"] = sorted(cfg["cpt"]["tokens"])
    split = cfg["studies"]["split"]
    split["k_domains"] = split["k_domains"] or len(cfg["domains"])  # K of the K-domain compute multiplier
    resolve_decide(cfg, where)  # after the sorting: its defaults copy the sorted lists
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    """Read, validate and normalise a config file."""
    return normalise_config(read_config_file(path), str(path))

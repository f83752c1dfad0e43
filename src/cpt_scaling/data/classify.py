"""fastText domain classifier: train it from labelled seed files, then label every document of a raw pool."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cpt_scaling.core.atomic import atomic_dir, atomic_path, write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.progress import LogProgress
from cpt_scaling.data.batch_process import batches_in_child
from cpt_scaling.data.classify_report import plot_confusion, plot_thresholds, threshold_report
from cpt_scaling.data.docs_io import count_documents, doc_hash, hash_fraction, iter_document_batches

log = logging.getLogger(__name__)

LABEL_PREFIX = "__label__"
CLASSIFIED_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("domain", pa.string()), ("score", pa.float32()), ("n_chars", pa.int32())]
)
ROW_GROUP_ROWS = 65536
#: Distinct seed documents a label needs (fewer cannot train, nor validate, a classifier).
MIN_SEED_DOCUMENTS = 10


def preprocess_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Vectorised ``preprocess`` (Arrow compute, C++) over a string array."""
    return pc.replace_substring(pc.utf8_lower(texts), "\n", " ")


def preprocess(text: str) -> str:
    """Normalise text to one fastText line, the same way for training and prediction.

    Rule: lowercase (Unicode, Arrow's ``utf8_lower``), and every newline becomes a space (fastText reads a
    newline as the end of the document). Nothing else: fastText's own tokenizer splits words on whitespace
    (space, tab, vertical tab, form feed, carriage return, NUL), so punctuation stays attached to its word.
    Example: ``"It's U.S.-made!\n"`` -> ``"it's u.s.-made! "``. For many texts use ``preprocess_array``, which
    gives identical lines.
    """
    return preprocess_array(pa.array([text], pa.string()))[0].as_py()


def _check_label(label: str, where: str) -> None:
    """A label must be a non-empty word (fastText labels cannot hold whitespace)."""
    if not label or label != "".join(label.split()) or label.startswith(LABEL_PREFIX):
        problem = f"label {label!r} must be a non-empty word without whitespace or {LABEL_PREFIX!r}"
        raise InputError(where, problem)


def _read_seed_file(path: Path, label: str, text_column: str, id_column: str) -> list[str]:
    """Return the texts of one seed file, checking an optional ``label`` column against ``label``."""
    texts: list[str] = []
    for batch in iter_document_batches(
        path, text_column=text_column, id_column=id_column, extra_columns=("label",)
    ):
        if "label" in batch.schema.names:
            for value in batch.column("label").to_pylist():
                if value is not None and str(value) != label:
                    raise InputError(str(path), f"unknown label {value!r} in a seed file for label {label!r}")
        texts.extend(batch.column("text").to_pylist())
    return texts


def _split_seeds(
    seed_files: dict[str, list[Path]], validation_fraction: float, text_column: str, id_column: str
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Read all seeds as (label, preprocessed text); split by document hash into train and validation."""
    train: list[tuple[str, str]] = []
    val: list[tuple[str, str]] = []
    for label in sorted(seed_files):
        where = f"seed files for label {label!r}"
        _check_label(label, where)
        if not seed_files[label]:
            raise InputError(where, "no seed files given")
        n_train, n_val = len(train), len(val)
        distinct: set[str] = set()
        for path in seed_files[label]:
            texts = _read_seed_file(Path(path), label, text_column, id_column)
            lines = preprocess_array(pa.array(texts, pa.string())).to_pylist()
            for text, line in zip(texts, lines, strict=True):
                digest = doc_hash(text)
                distinct.add(digest)
                target = val if hash_fraction(digest) < validation_fraction else train
                target.append((label, line))
        files = ", ".join(str(p) for p in seed_files[label])
        if len(distinct) < MIN_SEED_DOCUMENTS:
            raise InputError(files, f"label {label!r} has {len(distinct)} distinct document(s); a classifier needs at "
                                    f"least {MIN_SEED_DOCUMENTS} per label")
        if len(train) == n_train:
            raise InputError(files, f"label {label!r} has no training documents after the validation split")
        if validation_fraction > 0 and len(val) == n_val:
            raise InputError(files, f"label {label!r} has no validation documents (its {len(distinct)} distinct "
                                    f"documents all hash into training): add seed documents or raise "
                                    f"classifier.validation_fraction")
    return train, val


def _metrics(labels: list[str], truth: list[str], pred: list[str]) -> dict[str, Any]:
    """Per-label precision/recall/F1, macro-F1, accuracy, confusion matrix (truth -> predicted -> n)."""
    confusion = {t: dict.fromkeys(labels, 0) for t in labels}
    for t, p in zip(truth, pred, strict=True):
        confusion[t][p] += 1
    per_label: dict[str, dict[str, float | int]] = {}
    for lab in labels:
        tp = confusion[lab][lab]
        n_pred = sum(confusion[t][lab] for t in labels)
        n_true = sum(confusion[lab].values())
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[lab] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true}
    n = len(truth)
    return {
        "per_label": per_label,
        "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])) if n else None,
        "accuracy": sum(t == p for t, p in zip(truth, pred, strict=True)) / n if n else None,
        "confusion": confusion,
        "n_validation": n,
    }


def _top_labels(model: Any, lines: list[str]) -> tuple[list[str], np.ndarray]:
    """Batched top-1 prediction: label names without the prefix and their probabilities (float32)."""
    all_labels, all_probs = model.predict(lines, k=1)
    names = [labs[0][len(LABEL_PREFIX) :] if labs else "" for labs in all_labels]
    probs = np.fromiter((p[0] if len(p) else 0.0 for p in all_probs), dtype=np.float32, count=len(lines))
    # fastText adds 1e-5 inside its log-probabilities, so a sure prediction can read 1.00001: clip to 1.
    return names, np.minimum(probs, np.float32(1.0))


def train_classifier(
    seed_files: dict[str, list[Path]],
    out_dir: Path,
    *,
    epoch: int,
    lr: float,
    word_ngrams: int,
    dim: int,
    min_count: int,
    validation_fraction: float,
    seed: int,
    text_column: str = "text",
    id_column: str = "id",
    bucket: int = 200_000,
    model: Path | None = None,
) -> dict[str, Any]:
    """Train a fastText classifier on labelled seeds and write its directory ``out_dir`` (atomically); with
    ``model`` (an existing fastText classifier whose labels cover every seed label), install that one instead and
    report its metrics on every seed document.

    Files: ``model.bin``; ``metrics.json`` (validation per-label precision/recall/F1, macro-F1, accuracy,
    confusion matrix, label counts, parameters); ``confusion.pdf``; ``thresholds.json`` and ``thresholds.pdf``
    (yield and precision per label over a grid of score thresholds, see ``classify_report``).

    Labels are the keys of ``seed_files``. A document goes to validation when the first 8 hex digits of its
    sha256, read as a fraction of 2**32, fall below ``validation_fraction``. Training lines are shuffled
    with ``seed`` and fastText runs single-threaded with that seed, so the model is deterministic. ``bucket``
    is the number of hashed word-n-gram rows (fastText's default, 2M, makes a ~0.8 GB model at dim 100).
    """
    import fasttext

    if not seed_files:
        raise InputError("seed_files", "no labels given")
    if model is not None:
        return install_classifier(Path(model), seed_files, out_dir, text_column=text_column, id_column=id_column)
    train, val = _split_seeds(seed_files, validation_fraction, text_column, id_column)
    order = np.random.default_rng(seed).permutation(len(train))
    labels = sorted(seed_files)
    params = {
        "epoch": epoch,
        "lr": lr,
        "word_ngrams": word_ngrams,
        "dim": dim,
        "min_count": min_count,
        "bucket": bucket,
        "validation_fraction": validation_fraction,
        "seed": seed,
        "text_column": text_column,
        "id_column": id_column,
    }
    log.info("training fastText on %d documents (%d for validation), labels %s", len(train), len(val), labels)
    with atomic_dir(out_dir) as tmp:
        train_txt = tmp / "train.txt"
        with open(train_txt, "w", encoding="utf-8") as fh:
            for i in order:
                label, line = train[i]
                fh.write(f"{LABEL_PREFIX}{label} {line}\n")
        model = fasttext.train_supervised(
            input=str(train_txt),
            epoch=epoch,
            lr=lr,
            wordNgrams=word_ngrams,
            dim=dim,
            minCount=min_count,
            bucket=bucket,
            thread=1,
            seed=seed,
            verbose=0,
        )
        train_txt.unlink()
        model.save_model(str(tmp / "model.bin"))
        metrics = _write_report(tmp, model, labels, val, params, {"train": {
            lab: sum(1 for t, _ in train if t == lab) for lab in labels}})
    log.info("classifier validation macro-F1 %s on %d documents", metrics["macro_f1"], len(val))
    return metrics


def _write_report(out: Path, model: Any, labels: list[str], val: list[tuple[str, str]], params: dict[str, Any],
                  counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """``metrics.json``, ``thresholds.json`` and their figures of ``model`` on the labelled lines ``val``."""
    pred, scores = _top_labels(model, [line for _, line in val]) if val else ([], np.empty(0, np.float32))
    truth = [lab for lab, _ in val]
    metrics = _metrics(labels, truth, pred)
    metrics["label_counts"] = {**counts, "validation": {lab: truth.count(lab) for lab in labels},
                               "predicted": {lab: pred.count(lab) for lab in labels}}
    metrics["params"] = params
    write_json(out / "metrics.json", metrics)
    thresholds = threshold_report(labels, truth, pred, scores)
    write_json(out / "thresholds.json", thresholds)
    plot_confusion(metrics, out / "confusion.pdf")
    plot_thresholds(thresholds, out / "thresholds.pdf")
    return metrics


def install_classifier(model_path: Path, seed_files: dict[str, list[Path]], out_dir: Path, *,
                       text_column: str = "text", id_column: str = "id") -> dict[str, Any]:
    """Install an existing fastText classifier as ``out_dir/model.bin`` (atomically) with the same reports a
    trained one gets, measured on every seed document (none was held out of its training here). Its labels must
    include every seed label (a label it predicts beyond them is reported, and is used by no corpus)."""
    model = load_classifier(model_path)
    known = sorted(lab[len(LABEL_PREFIX):] for lab in model.get_labels())
    missing = sorted(set(seed_files) - set(known))
    if missing:
        raise InputError(str(model_path), f"the classifier has no label(s) {', '.join(missing)} "
                                          f"(its labels: {', '.join(known)})")
    _, lines = _split_seeds(seed_files, 0.0, text_column, id_column)[0], None
    seeds = _split_seeds(seed_files, 0.0, text_column, id_column)[0]
    del lines
    params = {"model": str(model_path), "text_column": text_column, "id_column": id_column,
              "evaluated_on": "every seed document"}
    with atomic_dir(out_dir) as tmp:
        (tmp / "model.bin").write_bytes(Path(model_path).read_bytes())
        metrics = _write_report(tmp, model, sorted(set(known) | set(seed_files)), seeds, params, {})
    log.info("installed classifier %s: macro-F1 %s on %d seed documents", model_path, metrics["macro_f1"],
             len(seeds))
    return metrics


def load_classifier(model_path: Path) -> Any:
    """Load a fastText model, raising ``InputError`` when the file is missing or not a fastText model."""
    import fasttext

    model_path = Path(model_path)
    if not model_path.is_file():
        raise InputError(str(model_path), "classifier model not found")
    try:
        return fasttext.load_model(str(model_path))
    except (ValueError, RuntimeError, OSError) as exc:
        raise InputError(str(model_path), f"not a fastText model: {exc}") from None


def classify_file(
    model_path: Path,
    pool_file: Path,
    out_parquet: Path,
    *,
    text_column: str = "text",
    id_column: str = "id",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Label every document of ``pool_file``; write (doc_id, domain, score, n_chars) Parquet in input order.

    ``domain`` is the top label, ``score`` its probability. Returns ``{"n_docs", "counts"}`` (docs per label).
    """
    # A child process decompresses, parses and preprocesses the next batches while fastText predicts this one
    # (predict holds the GIL, so a reader thread could not run beside it). It starts before the model loads.
    ahead = batches_in_child(functools.partial(_prepared_batches, pool_file, text_column, id_column, batch_size))
    model = load_classifier(model_path)
    labels = sorted(lab[len(LABEL_PREFIX) :] for lab in model.get_labels())
    counts = dict.fromkeys(labels, 0)
    n_docs = 0
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    with (
        atomic_path(out_parquet) as tmp,
        pq.ParquetWriter(tmp, CLASSIFIED_SCHEMA, compression="zstd") as writer,
        LogProgress(log, f"classified {pool_file}", total=count_documents(pool_file)) as progress,
    ):
        for batch in ahead:
            names, probs = _top_labels(model, batch.column("line").to_pylist())
            pending.append(
                pa.RecordBatch.from_arrays(
                    [batch.column("doc_id"), pa.array(names, pa.string()), pa.array(probs), batch.column("n_chars")],
                    schema=CLASSIFIED_SCHEMA,
                )
            )
            n_pending += batch.num_rows
            if n_pending >= ROW_GROUP_ROWS:
                n_pending = _flush(writer, pending, keep_tail=True)
            for name, n in Counter(names).items():
                counts[name] = counts.get(name, 0) + n
            n_docs += batch.num_rows
            progress.update(batch.num_rows)
        _flush(writer, pending, keep_tail=False)
    log.info("classified %d documents of %s: %s", n_docs, pool_file, counts)
    return {"n_docs": n_docs, "counts": counts}


def label_file(pool_file: Path, out_parquet: Path, *, label: str | None = None, label_column: str | None = None,
               text_column: str = "text", id_column: str = "id", batch_size: int = 4096) -> dict[str, Any]:
    """The labels a user already has, in :func:`classify_file`'s table (score 1): ``label`` for every document of
    ``pool_file``, or each document's ``label_column`` (a null stays unlabelled: used only by the unfiltered
    pool). Returns ``{"n_docs", "counts"}``."""
    if (label is None) == (label_column is None):
        raise InputError(str(pool_file), "give exactly one of a file label or a label column")
    counts: Counter[str] = Counter()
    n_docs = 0
    extra = () if label_column is None else (label_column,)
    with (
        atomic_path(out_parquet) as tmp,
        pq.ParquetWriter(tmp, CLASSIFIED_SCHEMA, compression="zstd") as writer,
        LogProgress(log, f"labelled {pool_file}", total=count_documents(pool_file)) as progress,
    ):
        for batch in iter_document_batches(pool_file, text_column=text_column, id_column=id_column,
                                           batch_size=batch_size, extra_columns=extra):
            if label_column is not None and label_column not in batch.schema.names:
                raise InputError(str(pool_file), f"no label column {label_column!r} (data.label_column)")
            names = (pa.array([label] * batch.num_rows, pa.string()) if label is not None
                     else batch.column(label_column).cast(pa.string()))
            writer.write_batch(pa.RecordBatch.from_arrays(
                [batch.column("doc_id"), names, pa.array(np.ones(batch.num_rows, np.float32)),
                 pc.utf8_length(batch.column("text")).cast(pa.int32())], schema=CLASSIFIED_SCHEMA))
            counts.update(n for n in names.to_pylist() if n is not None)
            n_docs += batch.num_rows
            progress.update(batch.num_rows)
    log.info("labelled %d documents of %s from %s: %s", n_docs, pool_file,
             f"the file's label {label!r}" if label is not None else f"column {label_column!r}", dict(counts))
    return {"n_docs": n_docs, "counts": dict(counts)}


def _prepared_batches(pool_file: Path, text_column: str, id_column: str, batch_size: int
                      ) -> Iterator[pa.RecordBatch]:
    """Batches of (doc_id, n_chars, line): the pool file's documents ready for ``predict``."""
    for batch in iter_document_batches(pool_file, text_column=text_column, id_column=id_column,
                                       batch_size=batch_size):
        text = batch.column("text")
        n_chars = pc.utf8_length(text).cast(pa.int32())
        yield pa.RecordBatch.from_arrays([batch.column("doc_id"), n_chars, preprocess_array(text)],
                                         names=["doc_id", "n_chars", "line"])


def _flush(writer: pq.ParquetWriter, pending: list[pa.RecordBatch], *, keep_tail: bool) -> int:
    """Write whole row groups of ``ROW_GROUP_ROWS`` from ``pending`` (all rows unless ``keep_tail``).

    ``pending`` is replaced in place by the rows left over; returns their number.
    """
    table = pa.Table.from_batches(pending, schema=CLASSIFIED_SCHEMA)
    n_write = (table.num_rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS if keep_tail else table.num_rows
    if n_write:
        writer.write_table(table.slice(0, n_write), row_group_size=ROW_GROUP_ROWS)
    rest = table.slice(n_write)
    pending[:] = rest.to_batches()
    return rest.num_rows

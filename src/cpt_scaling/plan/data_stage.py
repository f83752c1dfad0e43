"""The data stage of the plan: the classifier, the classified pool, the tokenizer and the shards per corpus (and of
the unfiltered pool when the specialisation study's generalist trains on it)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from cpt_scaling.config.names import GENERAL, POOL
from cpt_scaling.data.jobs import ClassifierJob, ClassifyJob, ShardsJob, TokenizerJob
from cpt_scaling.plan.artifact import MAIN_OUTPUT, Artifact, raw


class DataStage:
    """Builds the data artifacts of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin: it uses the plan's config,
    digests, ``_add`` and ``_spec``)."""

    def _data_stage(self) -> None:
        cfg, data = self.cfg, self.cfg["data"]
        columns = {"text": data["text_column"], "id": data["id_column"]}
        seeds = {label: [self.digests.digest(p) for p in paths] for label, paths in data["seeds"].items()}
        file_labels = {f: label for label, files in data["pool_labels"].items() for f in files}
        self.classifier: Artifact | None = None
        if data["label_column"] is None and any(f not in file_labels for f in data["pool"]):
            self.classifier = self._add(self._classifier_artifact(seeds, columns))
        self.classified: list[Artifact] = []
        for pool_file in data["pool"]:
            stem = Path(pool_file).name.split(".")[0]
            job = ClassifyJob(raw(pool_file), None, text_column=columns["text"], id_column=columns["id"])
            if pool_file in file_labels:  # labels the user already has: the file's, or a column's
                source: dict[str, Any] = {"label": file_labels[pool_file]}
                job = replace(job, label=file_labels[pool_file])
            elif data["label_column"] is not None:
                source = {"label_column": data["label_column"]}
                job = replace(job, label_column=data["label_column"])
            else:
                assert self.classifier is not None
                source = {"classifier": self.classifier.key}
                job = replace(job, model=self.classifier.ref(MAIN_OUTPUT["classifier"]))
            self.classified.append(self._add(Artifact(
                "classified", stem,
                self._spec("classified", **source, pool=self.digests.digest(pool_file), columns=columns),
                self.root, job=job,
            )))
        tok = cfg["tokenizer"]
        seed_files: list[str] = [p for paths in data["seeds"].values() for p in paths]
        path = tok["path"]
        if path and tok.get("path_id"):
            # A declared identity stands in for the content digest; the path is read at run time.
            tok_spec = self._spec("tokenizer", path_id=tok["path_id"])
        elif path:
            tok_spec, path = self._spec("tokenizer", path_digest=self.digests.digest(path)), raw(path)
        else:  # trained on the seed files
            tok_spec = self._spec("tokenizer", vocab_size=tok["vocab_size"], seeds=seeds, columns=columns)
            seed_files = [raw(p) for p in seed_files]
        self.tokenizer = self._add(Artifact(
            "tokenizer", f"bpe{tok['vocab_size']}" if not tok["path"] else "local", tok_spec, self.root,
            job=TokenizerJob(seed_files, tok["vocab_size"], path, text_column=columns["text"],
                             id_column=columns["id"]),
        ))
        self.shards: dict[str, Artifact] = {}
        for corpus in [GENERAL, *self.domains, *([POOL] if self.pool_generalist else [])]:
            threshold = (cfg["general"]["threshold"] if corpus == GENERAL else 0.0 if corpus == POOL
                         else cfg["domains"][corpus]["threshold"])
            self.shards[corpus] = self._add(Artifact(
                "shards", corpus,
                self._spec("shards", corpus=corpus, threshold=threshold, params=cfg["shards"],
                           tokenizer=self.tokenizer.key, classified=[a.key for a in self.classified],
                           columns=columns), self.root,
                job=ShardsJob(corpus, threshold, [raw(p) for p in data["pool"]],
                              [a.ref(MAIN_OUTPUT["classified"]) for a in self.classified], self.tokenizer.ref(),
                              **cfg["shards"], text_column=columns["text"], id_column=columns["id"]),
            ))

    def _classifier_artifact(self, seeds: dict[str, list[str]], columns: dict[str, str]) -> Artifact:
        """The fastText classifier trained on the seeds, or the user's existing one (``classifier.model``)."""
        cfg, data = self.cfg, self.cfg["data"]
        params = {k: v for k, v in cfg["classifier"].items() if k != "model"}
        given = cfg["classifier"]["model"]
        extra = {} if given is None else {"model": self.digests.digest(given)}
        return Artifact(
            "classifier", "fasttext",
            self._spec("classifier", params=params, seeds=seeds, columns=columns, **extra), self.root,
            job=ClassifierJob({label: [raw(p) for p in paths] for label, paths in data["seeds"].items()},
                              **params, text_column=columns["text"], id_column=columns["id"],
                              model=None if given is None else raw(given)),
        )

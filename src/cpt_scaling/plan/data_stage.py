"""The data stage of the plan: the classifier, the classified pool, the tokenizer and the shards per corpus (and of
the unfiltered pool when the specialisation study's generalist trains on it)."""

from __future__ import annotations

from pathlib import Path

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
        self.classifier = self._add(Artifact(
            "classifier", "fasttext",
            self._spec("classifier", params=cfg["classifier"], seeds=seeds, columns=columns), self.root,
            job=ClassifierJob({label: [raw(p) for p in paths] for label, paths in data["seeds"].items()},
                              **cfg["classifier"], text_column=columns["text"], id_column=columns["id"]),
        ))
        self.classified: list[Artifact] = []
        for pool_file in data["pool"]:
            stem = Path(pool_file).name.split(".")[0]
            self.classified.append(self._add(Artifact(
                "classified", stem,
                self._spec("classified", classifier=self.classifier.key,
                           pool=self.digests.digest(pool_file), columns=columns), self.root,
                job=ClassifyJob(raw(pool_file), self.classifier.ref(MAIN_OUTPUT["classifier"]),
                                text_column=columns["text"], id_column=columns["id"]),
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

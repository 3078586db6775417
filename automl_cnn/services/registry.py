"""The MLflow model registry: the delivered model registered once, alias ``champion`` moved only
by a promotion.

A new version becomes ``champion`` according to the promotion policy (``--promote``):

- ``if-better`` (the default): only when it is better than the current champion by more than
  noise on the same yardstick, the same data (fingerprint) and the same test split: on the same
  test images, McNemar's exact test (:mod:`automl_cnn.stats`) on the images only one of the two
  gets right says it is right more often at the 5% level. A one-image gain does not promote, and
  repeated searches do not turn the test split into a selection set. A gain within noise, a tie,
  a worse score or a champion scored on another yardstick (not comparable) leaves the champion
  where it is, and the new version takes alias ``challenger``. A champion registered before
  versions kept their per-image test results (tag ``automl_cnn.test_correct``) cannot be paired:
  it is compared by test accuracy alone, strictly higher promotes (the rule before), and the
  reason says so; the new champion keeps its results, so the paired test applies from the next
  search on. With no champion yet, the new version becomes champion.
- ``always``: the new version becomes champion.
- ``never``: the champion never moves, and none is created: the new version is ``challenger``
  even when the model has no champion yet (promote it by hand, or with a run under ``always``).
  A smoke run under ``never`` can then never end up behind ``models:/NAME@champion``.

Every version records its yardstick and the decision as tags (``automl_cnn.fingerprint``,
``automl_cnn.split``, ``automl_cnn.test_accuracy``, ``automl_cnn.test_correct``,
``automl_cnn.promotion``, ``automl_cnn.compared_with``, ``automl_cnn.promotion_reason``) and a
line of its description; a later search reads the champion's yardstick from these tags.
``automl_cnn.test_correct`` is which test images the model gets right, in the split's order:
``N:`` and the bits, packed, zlib-compressed and base64-encoded (about 1.7 kB for 10,000 images;
see :func:`encode_correct`); ``automl_cnn.test_predicted`` is the class it predicts for each
(16-bit, compressed: :func:`encode_predicted`). The paired test is the search's metric's
(:class:`automl_cnn.metrics.Yardstick`): McNemar's, weighted under balanced accuracy; under macro
F1 a paired permutation test on the predictions, and against a champion that kept no predictions
test accuracy alone. :func:`decide` is the pure rule.
"""

from __future__ import annotations

import base64
import contextlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl_cnn.metrics import Yardstick, image_weights, label
from automl_cnn.stats import LEVEL, PairedTest, mcnemar

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from automl_cnn.services.tracking import MlflowTracker

POLICIES = ("if-better", "always", "never")
CHAMPION, CHALLENGER = "champion", "challenger"
TAG = "automl_cnn."
MAX_CORRECT_CHARS = 90_000  # a model version's tag holds 100,000 characters in MLflow's stores


@dataclass(frozen=True)
class Score:
    """A model's test accuracy and the yardstick it was measured on."""

    fingerprint: str  # the data's
    split: str  # the split's identity (engine.session.split_id)
    test_accuracy: float
    # per test image, in the split's order: whether the model gets it right (None: not recorded)
    correct: tuple[bool, ...] | None = None
    # the search's metric (automl_cnn/metrics.py) and the test labels it is scored on (derived
    # from the split, not recorded; None: accuracy needs none)
    metric: str = "accuracy"
    labels: tuple[int, ...] | None = None
    # per test image, in the split's order: the predicted class (None: not recorded); macro F1
    # pairs two models on these
    predicted: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Incumbent:
    """The version holding ``champion`` now, with its score (None where it records none)."""

    version: str
    score: Score | None


@dataclass(frozen=True)
class Decision:
    alias: str  # CHAMPION or CHALLENGER: the alias the new version takes
    compared_with: str | None  # the champion version it was compared with
    reason: str

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION


@dataclass(frozen=True)
class Registration:
    """A registered version and the alias it holds."""

    name: str
    version: str
    decision: Decision

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@{self.decision.alias}"


@dataclass(frozen=True)
class ModelEntry:
    """What is logged and registered: the module, an input example, the description, files."""

    module: Any  # a torch.nn.Module taking [0, 1] NCHW float32 images
    input_example: Any  # a numpy array
    description: str  # Markdown
    extra_files: tuple[Path, ...] = ()


def decide(policy: str, score: Score, champion: Incumbent | None, hold: str | None = None) -> Decision:
    """Whether a new version with ``score`` becomes champion under ``policy`` (the module's
    docstring has the rules), and why. ``hold``: a reason the search gives not to make its model
    the first champion (a task far from solved): ``if-better`` then leaves it challenger until a
    better one comes; ``always`` overrides it. Against an existing champion the scores decide."""
    if policy not in POLICIES:
        raise ValueError(f"unknown promotion policy {policy!r}; use one of: {', '.join(POLICIES)}")
    if hold and policy == "if-better" and champion is None:
        return Decision(CHALLENGER, None, f"not promoted: {hold}; there is no champion yet")
    if champion is None:
        if policy == "never":
            return Decision(CHALLENGER, None, "not promoted (--promote never); there is no champion yet")
        return Decision(CHAMPION, None, "promoted: there was no champion yet")
    against, comparable = _comparison(score, champion)
    if policy == "always":
        return Decision(CHAMPION, champion.version, f"promoted (--promote always), {against}")
    if policy == "never":
        return Decision(CHALLENGER, champion.version, f"not promoted (--promote never), {against}")
    if not comparable:
        return Decision(CHALLENGER, champion.version, f"not promoted, not comparable: {against}")
    assert champion.score is not None
    return _if_better(score, champion.score, champion.version)


def _if_better(score: Score, theirs: Score, version: str) -> Decision:
    """``if-better`` against a champion on the same yardstick: the paired test of the search's
    metric on the same test images, or (a champion that kept no per-image results to pair) test
    accuracy alone."""
    ours, name = f"test {score.test_accuracy:.2%}", f"champion version {version}'s {theirs.test_accuracy:.2%}"
    paired = _paired(score, theirs)
    if paired is None:
        kept = "predictions, which macro F1 needs," if score.metric == "macro_f1" else "results"
        who = f"champion version {version}" if _kept(theirs, score.metric) is None else "this model"
        against = f"{ours} vs {name} by accuracy alone ({who} kept no per-image test {kept} to pair)"
        if score.test_accuracy > theirs.test_accuracy:
            return Decision(CHAMPION, version, f"promoted: {against}")
        tie = "; a tie keeps the champion" if score.test_accuracy == theirs.test_accuracy else ""
        return Decision(CHALLENGER, version, f"not promoted: {against}{tie}")
    metric, test, mine, yours, n = paired
    if metric != "accuracy":  # both models scored on this search's metric
        ours, name = f"test {label(metric)} {mine:.2%}", f"champion version {version}'s {yours:.2%}"
    against = f"{ours} vs {name} on the same {n} test images"
    why = (
        f"{test.name} p={test.p_value:.2g}; of the images only one model gets right, {test.only_a} are "
        f"this model's and {test.only_b} the champion's"
    )
    if test.a_better(LEVEL):
        return Decision(CHAMPION, version, f"promoted: {against}, significantly better ({why})")
    verdict = "is not significantly better" if test.lead > 0 else "is not better"
    return Decision(CHALLENGER, version, f"not promoted: {against} {verdict} ({why})")


def _kept(score: Score, metric: str) -> tuple[Any, ...] | None:
    """The per-image results ``metric`` pairs two models on: predictions (macro F1), else right
    or wrong (None: not recorded)."""
    return score.predicted if metric == "macro_f1" else score.correct


def _paired(score: Score, theirs: Score) -> tuple[str, PairedTest, float, float, int] | None:
    """The two models compared on the search's metric over the same test images: (the metric
    used, the paired test, this model's score, the champion's, the images); None where their
    per-image results cannot be paired. Without the test labels an accuracy-like metric falls
    back to plain accuracy (right or wrong is all that is kept)."""
    kept = _kept(score, score.metric), _kept(theirs, score.metric)
    if kept[0] is None or kept[1] is None or len(kept[0]) != len(kept[1]):
        return None
    labels = None if score.labels is None else np.asarray(score.labels, np.int64)
    if score.metric == "macro_f1":
        if labels is None:
            return None
        stick = Yardstick("macro_f1", labels)
        mine, yours = np.asarray(kept[0]), np.asarray(kept[1])
        return "macro_f1", stick.compare(mine, yours), stick(mine), stick(yours), len(mine)
    metric = "accuracy" if labels is None else score.metric
    right, theirs_right = np.asarray(kept[0], bool), np.asarray(kept[1], bool)
    weights = None if labels is None else image_weights(metric, labels)
    share = (lambda r: float(r.mean())) if weights is None else (lambda r: float(np.sum(weights * r)))
    return metric, mcnemar(right, theirs_right, weights), share(right), share(theirs_right), len(right)


def _comparison(score: Score, champion: Incumbent) -> tuple[str, bool]:
    """How ``score`` compares with the champion's, in words, and whether they are comparable."""
    theirs, name = champion.score, f"champion version {champion.version}"
    if theirs is None:
        return f"{name} records no test score to compare with", False
    if theirs.fingerprint != score.fingerprint:
        return f"{name} was tested on other data (fingerprint {theirs.fingerprint}, this {score.fingerprint})", False
    if theirs.split != score.split:
        return f"{name} was tested on another split ({theirs.split}; this {score.split})", False
    text = f"test {score.test_accuracy:.2%} vs {name}'s {theirs.test_accuracy:.2%} on the same test split"
    return text, True


class ModelRegistry:
    """Registration of delivered models through a tracker's MLflow client."""

    def __init__(self, tracker: MlflowTracker) -> None:
        self.tracker = tracker
        self.client = tracker.client

    def register(
        self,
        run_id: str,
        name: str,
        entry: ModelEntry,
        score: Score,
        policy: str,
        hold: str | None = None,
        earlier: frozenset[str] = frozenset(),
    ) -> Registration:
        """Log and register ``entry`` as a version of ``name`` from search run ``run_id``, then
        give it alias ``champion`` or ``challenger`` by ``policy``. A search resumed after its
        version was registered reuses that version (never registers twice); if it already
        holds ``champion`` it keeps it and its recorded reason. ``earlier``: versions this run
        registered in earlier rounds (``resume --more``), which this round does not reuse."""
        version = self.registered_version(name, run_id, earlier)
        champion = self.champion(name)
        if version is None:
            version = self._log(run_id, name, entry)
        if champion is not None and champion.version == version:
            tags = self.client.get_model_version(name, version).tags
            compared = tags.get(f"{TAG}compared_with", "none")
            reason = tags.get(f"{TAG}promotion_reason", "promoted")
            decision = Decision(CHAMPION, None if compared == "none" else compared, reason)
        else:
            decision = decide(policy, score, champion, hold)
        self._record(name, version, entry.description, score, decision)
        return Registration(name, version, decision)

    def registered_version(self, name: str, run_id: str, earlier: frozenset[str] = frozenset()) -> str | None:
        """The version of ``name`` that search run ``run_id`` registered, if any (not counting
        the ``earlier`` rounds' versions)."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        except Exception:  # no such registered model yet
            return None
        found = sorted((int(v.version) for v in versions if str(v.version) not in earlier), reverse=True)
        return str(found[0]) if found else None

    def champion(self, name: str) -> Incumbent | None:
        """The version of ``name`` holding alias ``champion``, with the score its tags record."""
        found = self._by_alias(name, CHAMPION)
        return None if found is None else Incumbent(str(found.version), _recorded_score(found.tags))

    def _by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            aliases = self.client.get_registered_model(name).aliases
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # no such registered model yet
                return None
            raise
        version = aliases.get(alias)
        return None if version is None else self.client.get_model_version(name, str(version))

    def _log(self, run_id: str, name: str, entry: ModelEntry) -> str:
        """Log ``entry`` as an MLflow PyTorch model (``pt2``: an exported graph, no pickled code)
        in run ``run_id`` and register it as a new version of ``name``; returns the version."""
        import mlflow
        import torch
        from mlflow.models import infer_signature

        from automl_cnn.services.tracking import using_tracking_uri

        with torch.no_grad():
            output = entry.module(torch.as_tensor(entry.input_example)).numpy()
        signature = infer_signature(entry.input_example, output)
        torch_version = torch.__version__.split("+")[0]
        # MLflow prints "Successfully registered model ..." to stderr; the summary says it instead
        quiet = contextlib.redirect_stderr(io.StringIO())
        with quiet, using_tracking_uri(self.tracker.uri), mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pytorch.log_model(
                entry.module,
                name="model",
                input_example=entry.input_example,
                signature=signature,
                serialization_format="pt2",
                pip_requirements=[f"torch=={torch_version}"],
                extra_files=[str(p) for p in entry.extra_files],
                registered_model_name=name,
                await_registration_for=60,
            )
        return str(info.registered_model_version)

    def _record(self, name: str, version: str, description: str, score: Score, decision: Decision) -> None:
        """The yardstick and the decision as tags and a description line; the alias last."""
        tags = {
            "fingerprint": score.fingerprint,
            "split": score.split,
            "test_accuracy": repr(score.test_accuracy),
            "metric": score.metric,
            **({"test_correct": encoded} if (encoded := encode_correct(score.correct)) else {}),
            **({"test_predicted": coded} if (coded := encode_predicted(score.predicted)) else {}),
            "promotion": decision.alias,
            "compared_with": decision.compared_with or "none",
            "promotion_reason": decision.reason,
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, f"{TAG}{key}", value)
        line = f"- registered as **{decision.alias}**: {decision.reason}"
        self.client.update_model_version(name, version, description=f"{description}\n{line}")
        self.client.set_registered_model_alias(name, decision.alias, version)
        if decision.promoted:  # a resumed challenger promoted now holds one alias, not both
            challenger = self._by_alias(name, CHALLENGER)
            if challenger is not None and str(challenger.version) == version:
                self.client.delete_registered_model_alias(name, CHALLENGER)


def _recorded_score(tags: dict[str, str]) -> Score | None:
    """The score a version's tags record; None where they do not (e.g. registered by hand).
    Its per-image results are None where it kept none (registered before they were kept)."""
    try:
        accuracy = float(tags[f"{TAG}test_accuracy"])
        correct = decode_correct(tags.get(f"{TAG}test_correct"))
        predicted = decode_predicted(tags.get(f"{TAG}test_predicted"))
        return Score(tags[f"{TAG}fingerprint"], tags[f"{TAG}split"], accuracy, correct, predicted=predicted)
    except (KeyError, ValueError):
        return None


def _pack(raw: bytes, n: int) -> str | None:
    """``N:`` then ``raw`` zlib-compressed and base64-encoded; None where it would not fit in a tag."""
    text = f"{n}:{base64.b64encode(zlib.compress(raw, 9)).decode('ascii')}"
    return text if len(text) <= MAX_CORRECT_CHARS else None


def _unpack(text: str | None) -> tuple[int, bytes] | None:
    """The inverse of :func:`_pack`: (N, the raw bytes); None for no value or a damaged one."""
    if not text:
        return None
    try:
        count, data = text.split(":", 1)
        return int(count), zlib.decompress(base64.b64decode(data, validate=True))
    except (ValueError, zlib.error):
        return None


def encode_correct(correct: tuple[bool, ...] | None) -> str | None:
    """Per-image correctness as a tag value: ``N:`` then the bits packed, zlib-compressed and
    base64-encoded. None where there is nothing to record or it would not fit in a tag."""
    if correct is None:
        return None
    return _pack(np.packbits(np.array(correct, dtype=bool)).tobytes(), len(correct))


def decode_correct(text: str | None) -> tuple[bool, ...] | None:
    """The inverse of :func:`encode_correct`; None for no value or a damaged one."""
    unpacked = _unpack(text)
    if unpacked is None:
        return None
    n, raw = unpacked
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))
    return tuple(bool(b) for b in bits[:n]) if 0 <= n <= len(bits) else None


def encode_predicted(predicted: tuple[int, ...] | None) -> str | None:
    """Per-image predicted classes as a tag value: ``N:`` then the classes as 16-bit integers,
    zlib-compressed and base64-encoded. None where there is nothing to record or it would not
    fit in a tag (then macro F1 compares by accuracy alone)."""
    if predicted is None or (len(predicted) and max(predicted) >= 2**16):
        return None
    return _pack(np.asarray(predicted, dtype="<u2").tobytes(), len(predicted))


def decode_predicted(text: str | None) -> tuple[int, ...] | None:
    """The inverse of :func:`encode_predicted`; None for no value or a damaged one."""
    unpacked = _unpack(text)
    if unpacked is None or len(unpacked[1]) % 2:
        return None
    n, raw = unpacked
    values = np.frombuffer(raw, "<u2")
    return tuple(int(v) for v in values) if n == len(values) else None

"""Per-class figures of the delivered model (deliver/perclass.py): what plain accuracy hides."""

from __future__ import annotations

import numpy as np
import pytest

from automl_cnn.deliver.perclass import SUMMARY_ROWS, per_class


def test_a_model_that_never_predicts_the_rare_class_is_shown_as_such() -> None:
    y_true = np.array([0] * 90 + [1] * 10)
    y_pred = np.zeros(100, dtype=np.int64)  # 90% accurate, never says "defect"
    pc = per_class(y_true, y_pred, ("ok", "defect"))
    ok, defect = pc.classes
    assert (ok.support, ok.predicted, ok.recall, ok.precision) == (90, 100, 1.0, 0.9)
    assert (defect.support, defect.predicted, defect.recall, defect.precision) == (10, 0, 0.0, None)
    assert pc.balanced_accuracy == pytest.approx(0.5)
    assert pc.macro_f1 == pytest.approx((2 * 0.9 / 1.9) / 2)
    assert pc.imbalance == pytest.approx(9.0)
    assert pc.confusion == ((1.0, 0.0), (1.0, 0.0))  # each true class's row sums to 1
    lines = pc.summary_lines()
    assert lines[0].startswith("per class (test)    balanced accuracy 0.5000")
    assert "defect  recall 0.0000  precision    n/a  (10 images)" in lines[2]


def test_many_classes_show_their_lowest_recalls_in_the_summary() -> None:
    k = SUMMARY_ROWS + 3
    y_true = np.repeat(np.arange(k), 4)
    y_pred = y_true.copy()
    y_pred[[0, 1, 4]] = 5  # class 0 recalls 2/4, class 1 recalls 3/4
    pc = per_class(y_true, y_pred, tuple(f"c{c}" for c in range(k)))
    lines = pc.summary_lines()
    assert "the 5 lowest recalls of 15 classes" in lines[0] and len(lines) == 6
    assert lines[1].strip().startswith("c0  recall 0.5000") and lines[2].strip().startswith("c1  recall 0.7500")
    assert pc.to_record()["balanced_accuracy"] == pytest.approx(1 - (0.5 + 0.25) / k)

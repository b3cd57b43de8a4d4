"""Classification figures: confusion matrix, per-class figures and their 95 % intervals."""
import pytest

from maskwatch.benchmarks.accuracy.tables import class_table
from maskwatch.benchmarks.accuracy.metrics import confusion, per_class, wilson_interval


@pytest.mark.parametrize("hits, trials, low, high", [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3.
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_published_values(hits, trials, low, high):
    assert wilson_interval(hits, trials) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_without_trials_says_nothing_is_known():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_per_class_figures_from_a_confusion_matrix():
    truth = [0, 0, 0, 0, 1, 1, 2, 2]
    predicted = [0, 0, 0, 2, 1, 0, 2, 1]
    matrix = confusion(truth, predicted, 3)
    assert matrix.tolist() == [[3, 0, 1], [1, 1, 0], [0, 1, 1]]
    figures = per_class(matrix, ["a", "b", "c"])
    a, c = figures["classes"]["a"], figures["classes"]["c"]
    assert (a["precision"], a["recall"], a["support"]) == (0.75, 0.75, 4)
    assert figures["accuracy"] == 5 / 8
    assert c["recall_ci95"] == wilson_interval(1, 2) and a["precision_ci95"] == wilson_interval(3, 4)
    assert figures["macro_f1"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)


def test_class_table_gives_each_class_its_intervals_and_the_confusion_matrix():
    figures = per_class(confusion([0, 0, 1, 1, 1], [0, 1, 1, 1, 1], 2), ["masked", "bare"])
    lines = class_table(figures, digits=3)
    low, high = wilson_interval(3, 3)
    assert f"| bare | 0.750 ({wilson_interval(3, 4)[0]:.2f}-{wilson_interval(3, 4)[1]:.2f}) | 1.000 ({low:.2f}-{high:.2f}) | 0.857 | 3 |" in lines
    assert lines[-2:] == ["| masked | 1 | 1 |", "| bare | 0 | 3 |"]


def test_a_class_without_crops_says_no_data_not_zero():
    figures = per_class(confusion([0, 0, 1], [0, 1, 1], 3), ["with_mask", "without_mask", "mask_weared_incorrect"])
    lines = class_table(figures, digits=3)
    assert "| mask_weared_incorrect | no data | no data | no data | 0 |" in lines
    assert not any(line.startswith("| mask_weared_incorrect") and "0.000" in line for line in lines)

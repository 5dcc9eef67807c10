"""Calibration: pair scores split by person, error rates at thresholds, the threshold for a target FAR."""

from __future__ import annotations

import numpy as np
import pytest

from streams.identity.calibration import PairScores, summary


def scores(genuine, impostor) -> PairScores:
    return PairScores(np.array(genuine, dtype=float), np.array(impostor, dtype=float))


def test_pairs_of_one_person_are_genuine_and_the_others_impostor():
    rows = np.eye(3)[[0, 0, 1, 2]]  # a twice, b, c
    pairs = PairScores.of(["a", "a", "b", "c"], rows)
    assert pairs.genuine.tolist() == [1.0] and sorted(pairs.impostor.tolist()) == [0.0] * 5


def test_rates_count_accepts_at_or_above_the_threshold():
    pairs = scores([0.5, 0.7, 0.9], [0.1, 0.2, 0.5, 0.6])
    assert pairs.false_accept(0.5) == 0.5 and pairs.false_reject(0.5) == 0.0
    assert pairs.false_accept(0.61) == 0.0 and pairs.false_reject(0.71) == pytest.approx(2 / 3)


@pytest.mark.parametrize(("target", "accepted"), [(0.0, 0), (0.25, 1), (0.5, 2), (1.0, 4)])
def test_the_threshold_for_a_target_is_the_lowest_that_keeps_to_it(target, accepted):
    pairs = scores([0.9], [0.1, 0.2, 0.5, 0.6])
    threshold = pairs.threshold_for(target)
    assert pairs.false_accept(threshold) * 4 == accepted <= target * 4
    assert pairs.false_accept(np.nextafter(threshold, -np.inf)) * 4 > target * 4 or accepted == 4


def test_the_det_curve_runs_from_accepting_all_to_refusing_all():
    _, far, frr = scores([0.5, 0.9], [0.1, 0.6]).curve()
    assert (far[0], frr[0], far[-1], frr[-1]) == (1.0, 0.0, 0.0, 1.0)
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0)


def test_summary():
    assert summary(np.array([])) == {"count": 0}
    assert summary(np.array([0.0, 1.0]))["mean"] == 0.5

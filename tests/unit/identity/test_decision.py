"""The open-set decision, the threshold that applies, and one identity per face of a photo."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streams.identity import Decision, SubjectScores, assign_faces, decide, match_threshold
from streams.identity.assignment import _max_assignment
from streams.models.families import SFACE

T, MARGIN = 0.4, 0.05


@pytest.mark.parametrize(
    ("ranked", "decision", "margin"),
    [
        ([], Decision.UNKNOWN, None),
        ([("a", 0.39)], Decision.UNKNOWN, None),
        ([("a", 0.40)], Decision.MATCH, None),  # at the threshold is a match
        ([("a", 0.80), ("b", 0.30)], Decision.MATCH, 0.5),
        ([("a", 0.80), ("b", 0.78)], Decision.AMBIGUOUS, 0.02),  # both above it, within the margin
        ([("a", 0.42), ("b", 0.39)], Decision.MATCH, 0.03),  # within the margin, but b is below the threshold
        ([("a", 0.30), ("b", 0.29)], Decision.UNKNOWN, 0.01),
    ],
)
def test_decisions(ranked, decision, margin):
    verdict = decide(ranked, T, MARGIN)
    assert verdict.decision is decision
    assert verdict.margin == (None if margin is None else pytest.approx(margin))
    assert verdict.subject == (ranked[0][0] if ranked else None) and verdict.threshold == T
    assert verdict.record()["decision"] == decision.value


def test_the_query_threshold_wins_then_the_gallerys_then_the_models():
    sface = {"detector": "yunet-2023mar", "embedder": SFACE.identity, "dim": 128, "version": "1"}
    assert match_threshold(0.5, 0.6, sface) == 0.5
    assert match_threshold(None, 0.6, sface) == 0.6
    assert match_threshold(None, None, sface) == SFACE.same_person == 0.363
    assert match_threshold(None, None, None) == SFACE.same_person


def test_subject_scores_are_the_best_template_of_each_subject():
    similarities = np.array([0.1, 0.9, 0.5, 0.7, 0.2], dtype=np.float32)
    codes = np.array([0, 1, 0, 2, 2])
    scores = SubjectScores.of(similarities, codes, 4)
    assert scores.best[:3].tolist() == pytest.approx([0.5, 0.9, 0.7]) and scores.row[:3].tolist() == [2, 1, 3]
    assert scores.row[3] == -1 and scores.top(5) == [1, 2, 0]
    single = SubjectScores.of(similarities, np.arange(5), 5, one_each=True)
    assert single.top(2) == [1, 3]


def test_two_faces_never_get_one_subject_and_the_loser_takes_its_next():
    # Both faces look most like a; face 0 more so. Face 1 gets its next subject above the threshold, b.
    verdicts = assign_faces([[("a", 0.9), ("b", 0.3)], [("a", 0.8), ("b", 0.6)]], T, MARGIN)
    assert [(v.decision, v.subject) for v in verdicts] == [(Decision.MATCH, "a"), (Decision.MATCH, "b")]


def test_the_best_assignment_is_the_best_total_not_the_greediest_pair():
    # Greedy would give a to face 0 (0.9) and leave face 1 with nothing; 0.85 + 0.8 beats 0.9.
    verdicts = assign_faces([[("a", 0.9), ("b", 0.85)], [("a", 0.8)]], T, MARGIN)
    assert [v.subject for v in verdicts] == ["b", "a"] and all(v.decision is Decision.MATCH for v in verdicts)


def test_a_face_left_without_a_subject_above_the_threshold_is_unknown():
    verdicts = assign_faces([[("a", 0.9)], [("a", 0.7), ("b", 0.2)]], T, MARGIN)
    assert [(v.decision, v.subject) for v in verdicts] == [(Decision.MATCH, "a"), (Decision.UNKNOWN, "b")]


def test_the_assignment_is_optimal_on_random_problems():
    rng = np.random.default_rng(3)
    for _ in range(200):
        rows, cols = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        gain = rng.random((rows, cols)) * (rng.random((rows, cols)) < 0.6)
        pairs = _max_assignment(gain)
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
        best = max(
            sum(gain[i, j] for i, j in enumerate(perm) if j < cols)
            for perm in itertools.permutations(range(max(rows, cols)), rows)
        )
        assert sum(gain[i, j] for i, j in pairs) == pytest.approx(best)

import numpy as np
import pytest

from neuronaudit.raters import (
    long_to_counts,
    make_rater_pool,
    per_input_error_ratings,
    pool_ratings,
    rating_counts,
    ratings_to_long,
    uniform_error_ratings,
)


def test_uniform_error_rate_and_seeding():
    c = np.random.default_rng(0).integers(0, 2, 20000)
    r = uniform_error_ratings(c, 3, 0.2, rng=1)
    assert r.shape == (20000, 3) and set(np.unique(r)) <= {0, 1}
    assert abs((r != c[:, None]).mean() - 0.2) < 0.01
    np.testing.assert_array_equal(r, uniform_error_ratings(c, 3, 0.2, rng=1))
    with pytest.raises(ValueError, match="binary"):
        uniform_error_ratings([0, 0.5], 1, 0.1)


def test_per_input_errors_follow_beta():
    c = np.ones(20000, dtype=int)
    r, eta = per_input_error_ratings(c, 5, rng=2)
    assert abs(eta.mean() - 0.75 / 3.25) < 0.01
    assert abs((r == 0).mean() - eta.mean()) < 0.01


def test_pool_with_spammers_and_missing():
    pool = make_rater_pool(20, rng=3, spammer_fraction=0.25, spammer_kind="yes")
    assert (pool["kind"] == "yes").sum() == 5
    c = np.random.default_rng(4).integers(0, 2, 500)
    r = pool_ratings(c, pool, raters_per_input=3, rng=5)
    yes, total = rating_counts(r)
    assert (total == 3).all()
    yes_cols = np.flatnonzero(pool["kind"].to_numpy() == "yes")
    given = r[:, yes_cols]
    assert (given[given != -1] == 1).all()
    long = ratings_to_long(r, image_ids=np.arange(500) + 100, concept="dog")
    assert list(long.columns) == ["image_id", "concept", "rater_id", "rating"] and len(long) == 1500
    counts = long_to_counts(long)
    assert (counts["yes"].to_numpy() == yes).all() and (counts["total"] == 3).all()

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


def test_ratings_for_unknown_images_or_concepts_are_errors_naming_them():
    import pandas as pd
    import pytest

    from neuronaudit.raters import long_to_counts

    df = pd.DataFrame({"image_id": ["a", "b", "zz"], "concept": ["dog", "dog", "dog"],
                       "rater_id": ["r1", "r1", "r2"], "rating": [1, 0, 1]})
    with pytest.raises(ValueError, match=r"unknown images \['zz'\]"):
        long_to_counts(df, image_ids=["a", "b"], concepts=["dog"], source="batch1.csv")
    with pytest.raises(ValueError, match=r"unknown concepts \['dog'\]"):
        long_to_counts(df, image_ids=["a", "b", "zz"], concepts=["cat"])
    with pytest.raises(ValueError, match="missing column"):
        long_to_counts(df.drop(columns="rater_id"))
    conflict = pd.concat([df, df.iloc[[0]].assign(rating=0)], ignore_index=True)
    with pytest.raises(ValueError, match=r"rows \[0, 3\]"):
        long_to_counts(conflict)
    # a verbatim re-import of the same ratings counts once: ingestion is idempotent
    once = long_to_counts(df, image_ids=["a", "b", "zz"], concepts=["dog"])
    twice = long_to_counts(pd.concat([df, df], ignore_index=True), image_ids=["a", "b", "zz"], concepts=["dog"])
    pd.testing.assert_frame_equal(once, twice)
    assert once.set_index("image_id").loc["a", "yes"] == 1 and once["total"].sum() == 3

import numpy as np

from neuronaudit.explainers.baselines import top_activating_class
from neuronaudit.explainers.downstream import downstream_auc, downstream_summary
from neuronaudit.explainers.timing import RuntimeLog


def test_downstream_picks_matching_neuron():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=900)
    acts = rng.normal(size=(900, 5))
    acts[:, 4] += 3 * (labels == 0)
    acts[:, 1] += 3 * (labels == 2)
    class_emb = np.eye(3, 8)
    expl_emb = rng.normal(scale=0.01, size=(5, 8))
    expl_emb[4, 0] = 1.0
    expl_emb[1, 2] = 1.0
    expl_emb[0, 1] = 1.0
    df = downstream_auc(expl_emb, class_emb, acts, labels, ["a", "b", "c"], method="m")
    assert list(df["neuron"]) == [4, 0, 1]
    assert df["auc"].iat[0] > 0.95 and abs(df["auc"].iat[1] - 0.5) < 0.1
    assert np.isclose(downstream_summary(df)["m"], df["auc"].mean())


def test_top_activating_class_and_runtime():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, size=1000)
    acts = rng.normal(size=(1000, 2)) + 4 * np.stack([labels == 3, labels == 1], axis=1)
    best, share = top_activating_class(labels, acts, top_k=50)
    assert list(best) == [3, 1] and (share > 0.9).all()
    assert list(top_activating_class(labels, acts, mode="mean")[0]) == [3, 1]
    log = RuntimeLog()
    with log.time("m", "layer4", n_neurons=2):
        pass
    assert log.to_dict()[("m", "layer4")] >= 0 and log.table().shape == (1, 1)

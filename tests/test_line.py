"""LINE (explainers/line/, docs/line.md): scores, the history's update rule and replay, the offline loop
on a synthetic world in real MiniLM space, sharding and resuming, polysemanticity, the registry entry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from neuronaudit.data.vocabularies import wordfreq_words
from neuronaudit.explainers.line import scores
from neuronaudit.explainers.line.generators import LookupActivations, RetrievalGenerator, image_prompts
from neuronaudit.explainers.line.history import ConceptHistory, drop_rng, final_from_history, replay
from neuronaudit.explainers.line.loop import ControlSampler, LoopSettings, initial_concepts, run_neuron
from neuronaudit.explainers.line.polysemanticity import layer_table, neuron_polysemanticity
from neuronaudit.explainers.line.proposers import EmbeddingProposer, clean_vocabulary, parse_answer
from neuronaudit.explainers.line.stage import checkpoint_path, run_shard, select_neurons, shard_neurons
from neuronaudit.io import read_meta
from neuronaudit.text import encode_texts

CLASSES = ["dog", "car", "tree", "house", "boat", "bird", "chair", "shoe", "apple", "guitar"]
TARGETS = ["piano", "cat", "truck"]  # not class names: LINE must find them from guitar, dog, car


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """As the line_shard job runs the loop: BLAS threads only slow its small products down."""
    with threadpool_limits(1):
        yield


# ------------------------------------------------------------------------------------------------ scores
def test_auc_is_roc_auc_with_ties_and_vectorises():
    rng = np.random.default_rng(0)
    for _ in range(20):
        c, x = rng.integers(0, 4, 5).astype(float), rng.integers(0, 4, 30).astype(float)
        ref = roc_auc_score(np.r_[np.ones(5), np.zeros(30)], np.r_[c, x])
        assert scores.auc(c, x) == pytest.approx(ref)
    c, x = rng.normal(size=(7, 5)), rng.normal(size=(7, 40))
    batch = scores.auc(c, x)
    assert batch.shape == (7,)
    assert batch == pytest.approx([scores.auc(c[i], x[i]) for i in range(7)])
    assert scores.auc([3, 4], [0, 1, 2]) == 1.0 and scores.auc([0], [1, 2]) == 0.0


def test_mad_and_mean_activation():
    assert scores.mad([4, 6], [0, 2, 4]) == pytest.approx((5 - 2) / np.std([0, 2, 4], ddof=1))
    assert scores.mad([1.0], [2.0, 2.0]) == pytest.approx(-1.0)  # constant control: divided by 1
    assert scores.mean_activation([1, 2, 6]) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="unknown LINE score"):
        scores.get_score("f1")
    with pytest.raises(ValueError, match="needs concept and control"):
        scores.auc([], [1.0])


# ----------------------------------------------------------------------------------------------- history
def test_history_replaces_the_worst_when_better_else_drops_a_random_one_never_the_best():
    h = ConceptHistory(3, np.random.default_rng(0))
    for c, s in [("a", 0.9), ("b", 0.5), ("c", 0.7)]:
        assert h.add(c, s) == ""
    assert h.add("d", 0.6) == "b"  # better than the worst: replaces it
    assert set(h.scores) == {"a", "c", "d"}
    drops = []
    for i in range(200):
        h2 = ConceptHistory(3, np.random.default_rng(i))
        for c, s in [("a", 0.9), ("b", 0.5), ("c", 0.7)]:
            h2.add(c, s)
        drops.append(h2.add("x", 0.1))  # worse than all: a random one goes, weighted by max - score
        assert len(h2.scores) == 3 and "x" in h2.scores
    counts = pd.Series(drops).value_counts()
    assert "a" not in counts  # the best has weight 0
    assert counts["b"] > counts["c"] > 0  # weight 0.4 vs 0.2
    assert h.best() == ("a", 0.9)


def test_ties_are_broken_by_the_mean_activation():
    h = ConceptHistory(5, np.random.default_rng(0))
    h.add("class", 1.0, tie=0.2)
    h.add("target", 1.0, tie=0.9)
    assert h.best()[0] == "target"
    assert [c for c, _ in h.ranked()] == ["target", "class"]


def test_initial_concepts_are_top_classes_then_random_others():
    means = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8])
    names = list("abcdefg")
    got = initial_concepts(means, names, 3, 2, np.random.default_rng(0))
    assert got[:3] == ["b", "g", "d"]
    assert len(set(got)) == 5 and set(got[3:]) <= {"a", "c", "e", "f"}
    assert len(initial_concepts(means, names, 5, 5, np.random.default_rng(0))) == 7  # fewer classes than asked


def test_parse_answer_and_vocabulary_cleaning():
    assert parse_answer("<thinking>x</thinking>\n<answer>\n Red Fruit.\n</answer>") == "red fruit"
    assert parse_answer("blah\nPolka dots") == "polka dots"
    assert parse_answer("<answer>umbrella") == "umbrella"
    assert clean_vocabulary(["The", "a", "i", "2020", "dog", "Dog", "t-shirt", "ice cream", "x1"]) == [
        "the", "dog", "t-shirt", "ice cream"]
    p = image_prompts("boot", 5)
    assert len(p) == 5 and all(x.startswith("A realistic photo of a boot, ") for x in p) and p == image_prompts("boot", 5)


# -------------------------------------------------------------------------------------- synthetic world
@pytest.fixture(scope="module")
def world():
    """Images are noisy MiniLM embeddings of a content word drawn near their class name; a synthetic
    neuron's activation is the presence of a target concept (a calibrated sigmoid of the cosine with
    it). Probing split 1,000 images, held-out split 3,000 (the retrieval generator's)."""
    vocab = clean_vocabulary(wordfreq_words(5000))
    enc = lambda texts: encode_texts(list(texts))  # noqa: E731
    emb, cls_emb, tgt = enc(vocab), enc(CLASSES), enc(TARGETS)
    rng = np.random.default_rng(0)
    near = [np.argsort(-(emb @ c))[:15] for c in cls_emb]

    def images(n):
        cls = rng.integers(len(CLASSES), size=n)
        words = np.array([rng.choice(near[c]) for c in cls])
        x = emb[words] + rng.standard_normal((n, emb.shape[1])) / np.sqrt(emb.shape[1])
        return cls, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    (cp, ep), (_, eh) = images(1000), images(3000)

    def acts(e):
        return (1 / (1 + np.exp(-15 * (e @ tgt.T - 0.5))) + 0.01 * rng.standard_normal((len(e), len(TARGETS))))

    ap, ah = acts(ep).astype(np.float32), acts(eh).astype(np.float32)
    proposer = EmbeddingProposer(vocab, enc, vocabulary_name="wordfreq 5000")
    generator = RetrievalGenerator([f"h{i}" for i in range(len(eh))], eh, enc, concept_model="synthetic")
    generator.precompute(vocab + CLASSES)
    control = ControlSampler(ap, cp, CLASSES, proposer.embed(CLASSES), proposer.embed)
    return {"backends": (proposer, generator, LookupActivations(ah), control), "enc": enc}


def _synonym(found: str, target: str, enc) -> bool:
    e = enc([found, target])
    return found == target or found.rstrip("s") == target.rstrip("s") or float(e[0] @ e[1]) >= 0.8


@pytest.mark.parametrize("k", range(len(TARGETS)))
def test_offline_loop_reaches_the_neurons_concept(world, k):
    """The neuron's concept is not a class: the history starts from the classes (guitar, dog, car win),
    and the proposer must walk MiniLM space to the concept within 10 iterations + the summary."""
    h = run_neuron(k, *world["backends"], LoopSettings())
    assert len(h) == 10 + 10 + 1 and list(h["phase"].value_counts().sort_index()) == [10, 10, 1]
    assert h.loc[:9, "concept"].isin(CLASSES).all()
    assert not h["concept"].duplicated().any()  # the offline proposer never repeats itself
    proposed = h[h["phase"] != "init"]
    hits = [c for c in proposed["concept"] if _synonym(c, TARGETS[k], world["enc"])]
    assert hits, (TARGETS[k], list(proposed["concept"]))
    mean_act = h["activations"].map(np.mean)
    assert _synonym(h.loc[mean_act.idxmax(), "concept"], TARGETS[k], world["enc"])  # and its images fire most
    found = h["best_concept"].iloc[-1]
    assert found not in CLASSES  # the explanation moved off the starting classes ...
    e = world["enc"]([found, TARGETS[k]])
    assert float(e[0] @ e[1]) >= 0.5, (found, TARGETS[k])  # ... to the concept's neighbourhood
    ids = h["image_ids"].iloc[-1]
    assert len(ids) == 5 and all(i.startswith("h") for i in ids)  # held-out images only


def test_offline_loop_explains_most_neurons_by_their_concept(world):
    """The final explanation is the concept itself (or a synonym) for at least 2 of the 3 neurons: with
    5 images per concept AUC saturates and the control class is random, so a near neighbour may tie."""
    finals = [run_neuron(k, *world["backends"], LoopSettings())["best_concept"].iloc[-1] for k in range(len(TARGETS))]
    hits = [_synonym(f, t, world["enc"]) for f, t in zip(finals, TARGETS, strict=True)]
    assert sum(hits) >= 2, list(zip(finals, TARGETS, strict=True))


def test_loop_is_deterministic_and_replays_to_the_same_explanation(world):
    a = run_neuron(0, *world["backends"], LoopSettings(iterations=6))
    b = run_neuron(0, *world["backends"], LoopSettings(iterations=6))
    pd.testing.assert_frame_equal(a, b)
    final = final_from_history(a)
    assert replay(a, size=10) == {0: (final["concept"].iloc[0], final["score"].iloc[0])}
    bad = a.copy()
    bad.loc[bad["dropped"] != "", "dropped"] = "something else"
    if (a["dropped"] != "").any():
        with pytest.raises(ValueError, match="replay drops"):
            replay(bad, size=10)
    c = run_neuron(0, *world["backends"], LoopSettings(iterations=6, seed=1))
    assert not c["concept"].equals(a["concept"]) or not c["control_class"].equals(a["control_class"])


# ----------------------------------------------------------------------------------------- shards, resume
def test_shards_partition_the_selected_neurons():
    chosen = select_neurons(np.arange(100), 30, seed=0)
    assert len(chosen) == 30 and np.all(np.diff(chosen) > 0)
    assert np.array_equal(select_neurons(np.arange(100), 30, 0), chosen)
    parts = [shard_neurons(chosen, f"{i}-of-4") for i in range(1, 5)]
    assert sorted(sum(parts, [])) == list(chosen)
    with pytest.raises(ValueError, match="i-of-n"):
        shard_neurons(chosen, "2")


class _Killer:
    """Wraps a target and raises after ``limit`` neurons were started (a kill halfway)."""

    def __init__(self, inner, limit):
        self.inner, self.limit, self.neurons = inner, limit, []

    def __call__(self, generated, neuron):
        if neuron not in self.neurons:
            self.neurons.append(neuron)
            if len(self.neurons) > self.limit:
                raise KeyboardInterrupt("killed")
        return self.inner(generated, neuron)


def test_a_killed_shard_resumes_without_recomputing_finished_neurons(world, tmp_path):
    proposer, generator, target, control = world["backends"]
    line = {"iterations": 3}
    neurons = [0, 1, 2]
    killer = _Killer(target, limit=2)
    with pytest.raises(KeyboardInterrupt):
        run_shard(neurons, (proposer, generator, killer, control), line, tmp_path, "fp1", progress=False)
    done = sorted(tmp_path.glob("neuron_*.parquet"))
    assert [p.name for p in done] == ["neuron_00000.parquet", "neuron_00001.parquet"]
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    counter = _Killer(target, limit=99)
    out = tmp_path / "shard.parquet"
    hist = run_shard(neurons, (proposer, generator, counter, control), line, tmp_path, "fp1", out=out, progress=False)
    assert counter.neurons == [2]  # only the unfinished neuron ran
    assert {p: p.stat().st_mtime_ns for p in done} == mtimes  # finished ones untouched
    meta = read_meta(out)
    assert (meta["n_computed"], meta["n_resumed"]) == (1, 2)
    assert sorted(hist["neuron"].unique()) == neurons
    fresh = run_shard(neurons, (proposer, generator, target, control), line, tmp_path / "fresh", "fp1", progress=False)
    pd.testing.assert_frame_equal(hist.reset_index(drop=True), fresh.reset_index(drop=True))  # same as uninterrupted
    counter2 = _Killer(target, limit=99)  # other settings (fingerprint): everything is recomputed
    run_shard(neurons, (proposer, generator, counter2, control), line, tmp_path, "fp2", progress=False)
    assert counter2.neurons == neurons
    assert read_meta(checkpoint_path(tmp_path, 0))["fingerprint"] == "fp2"


# ------------------------------------------------------------------------------------- polysemanticity
def test_polysemanticity_counts_distinct_high_scoring_concepts_and_new_ones():
    def hist(neuron, items):
        return [{"neuron": neuron, "step": i, "concept": c, "score": s, "best_concept": best, "best_score": bs}
                for i, (c, s, best, bs) in enumerate(items)]

    rows = hist(0, [("boot", 0.95, "boot", 0.95), ("boots", 0.97, "boots", 0.97), ("handbag", 0.92, "boots", 0.97),
                    ("sky", 0.3, "boots", 0.97)])
    rows += hist(1, [("coat", 0.99, "coat", 0.99), ("sky", 0.5, "coat", 0.99), ("coat", 0.4, "coat", 0.99)])
    t = neuron_polysemanticity(pd.DataFrame(rows), lambda c: encode_texts(list(c)), ["coat", "boot", "bag"],
                               threshold=0.9, distinct_similarity=0.6)
    assert list(t["n_high"]) == [3, 1] and list(t["n_distinct"]) == [2, 1]
    assert t.loc[0, "distinct"] == ["boots", "handbag"]
    assert list(t["polysemantic"]) == [True, False]
    assert list(t["new_concept"]) == [True, False]  # 'boots' is not in the reference vocabulary
    layer = layer_table({("m", "l", "line_offline"): t}, {"threshold": 0.9, "distinct_similarity": 0.6}, "labels", 3)
    assert layer.loc[0, "share_polysemantic"] == 0.5 and layer.loc[0, "share_new_concepts"] == 0.5


# -------------------------------------------------------------------------------------------- registry
def test_registry_entry_checks_the_config_and_points_to_the_rule():
    from neuronaudit.explainers.registry import ExplainInputs, get_explainer
    from neuronaudit.explainers.stage import check_method

    check_method("line_offline", {"method": "line"})
    check_method("line", {"method": "line", "params": {"backends": "generative"}})
    with pytest.raises(ValueError, match="must say so in its name"):
        check_method("line", {"method": "line"})
    with pytest.raises(ValueError, match="backends"):
        check_method("line_offline", {"method": "line", "params": {"backends": "gpt"}})
    with pytest.raises(ValueError, match="not understood"):
        check_method("line_offline", {"method": "line", "params": {"iterations": 3}})
    with pytest.raises(ValueError, match="line_shard"):
        get_explainer("line").explain(ExplainInputs(method="line_offline", entry={"method": "line"}))


def test_drop_rng_is_per_neuron():
    assert drop_rng(0, 1).random() == drop_rng(0, 1).random() != drop_rng(0, 2).random()


# ------------------------------------------------------------------------------------------------- CoSy
def test_cosy_scores_match_scipy_mann_whitney_with_ties():
    from scipy.stats import mannwhitneyu

    from neuronaudit.explainers.line.cosy import cosy_scores, cosy_summary

    rng = np.random.default_rng(0)
    n_img, n = 400, 30
    acts = rng.integers(0, 20, size=(n_img, 3)).astype(float)  # many ties
    pres = rng.random((n_img, 4))
    acts[np.argsort(-pres[:, 0])[:n], 0] += 15  # neuron 0 fires on images of its explanation 'a'
    table = pd.DataFrame({"neuron": [0, 1, 2, 0], "method": "m", "explanation": ["a", "b", "c + d", "zz"],
                          "structured": ['{"kind": "simple", "concept": "a"}', '{"kind": "simple", "concept": "b"}',
                                         '{"kind": "linear", "terms": [[1.0, "c"], [0.5, "d"]], "bias": 0.0}',
                                         '{"kind": "simple", "concept": "zz"}']})
    out = cosy_scores(acts, pres, list("abcd"), table, n_images=n, model="m", layer="l")
    for i, (k, s) in enumerate([(0, pres[:, 0]), (1, pres[:, 1]), (2, pres[:, 2] + 0.5 * pres[:, 3])]):
        top = np.argsort(-s)[:n]
        rest = np.setdiff1d(np.arange(n_img), top)
        ref = mannwhitneyu(acts[top, k], acts[rest, k], alternative="greater", method="asymptotic")
        assert out.loc[i, "auc"] == pytest.approx(ref.statistic / (n * (n_img - n)))
        assert out.loc[i, "p_value"] == pytest.approx(ref.pvalue)
        assert out.loc[i, "mad"] == pytest.approx((acts[top, k].mean() - acts[rest, k].mean()) / acts[rest, k].std(ddof=1))
    assert out.loc[0, "auc"] > 0.95 and out.loc[0, "p_value"] < 1e-6
    assert np.isnan(out.loc[3, "auc"]) and "zz" in out.loc[3, "reason"]
    summary = cosy_summary(out)
    assert summary.loc[0, "n_explanations"] == 4 and summary.loc[0, "n_scored"] == 3
    assert summary.loc[0, "mean_auc"] == pytest.approx(out["auc"].iloc[:3].mean())

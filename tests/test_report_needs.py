"""What a study needs from outside (report.needs, issue 11 item 6): the paper's config names its
ImageNet path and the weights it downloads; a study whose paths all exist prints nothing."""

from pathlib import Path

from neuronaudit.config import load_config
from neuronaudit.report.needs import needs_message, study_needs

REPO = Path(__file__).resolve().parents[1]


def test_paper_config_lists_its_path_and_downloads():
    config = load_config(REPO / "config" / "paper.yaml")
    needs = study_needs(config, REPO)
    assert ("dataset.root", "/path/to/imagenet/val", False) in needs["paths"]
    what = [w for _, w, _ in needs["downloads"]]
    assert "torchvision resnet50 weights IMAGENET1K_V2" in what
    assert any(w.startswith("open_clip ViT-SO400M-14-SigLIP-384") for w in what)
    message = needs_message(config, REPO)
    assert "dataset.root: /path/to/imagenet/val  [MISSING here]" in message and "concept_models.siglip:" in message


def test_found_paths_print_nothing_and_patterns_match_any_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "imports").mkdir()
    (tmp_path / "imports" / "milan_rn50_layer4.csv").write_text("x")
    config = {"study": "s", "dataset": {"root": "data"}, "models": {}, "concept_models": {},
              "explain": {"methods": {"milan": {"method": "import", "path": "imports/milan_{model}_{layer}.csv"},
                                      "gone": {"method": "import", "path": "imports/none_{model}.csv"}}}}
    paths = {k: ok for k, _, ok in study_needs(config, tmp_path)["paths"]}
    assert paths == {"dataset.root": True, "explain.methods.milan.path": True, "explain.methods.gone.path": False}
    del config["explain"]
    assert needs_message(config, tmp_path) == ""
    assert "dataset.root: data  [found]" in needs_message(config, tmp_path, always=True)

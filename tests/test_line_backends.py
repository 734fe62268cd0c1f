"""LINE's generative backends end to end with tiny RANDOMLY INITIALISED models built here: a Llama chat
model with a word-level tokenizer trained on a few words, and a Stable Diffusion pipeline assembled from
a tiny UNet, VAE, CLIP text encoder and scheduler. PLUMBING ONLY: the concepts and images are
gibberish; what is tested is that prompts, chat templates, seeds, batching, parsing, the target model's
forward hook and the history record work together."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")
tokenizers = pytest.importorskip("tokenizers")

from neuronaudit.activations.models import LoadedModel, image_transform  # noqa: E402
from neuronaudit.explainers.line.generators import DiffusersGenerator, image_prompts  # noqa: E402
from neuronaudit.explainers.line.history import replay  # noqa: E402
from neuronaudit.explainers.line.loop import ControlSampler, LoopSettings, run_neuron  # noqa: E402
from neuronaudit.explainers.line.proposers import LLMProposer, read_prompt  # noqa: E402

WORDS = ("concept concepts score scores neuron image images red fruit dog car boot shoe bag coat polka dots "
         "answer thinking the a of and to is propose one new best already tried").split()
CHAT = ("{% for m in messages %}<user> {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}<assistant>"
        "{% endif %}")


def _tokenizer(max_length=None):
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<user>", "<assistant>", "<answer>", "</answer>"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(specials + WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    kw = {"model_max_length": max_length} if max_length else {}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                                bos_token="<s>", eos_token="</s>", chat_template=CHAT, **kw)


@pytest.fixture(scope="module")
def llm():
    torch.manual_seed(0)
    tok = _tokenizer()
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                                   pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id)
    return transformers.LlamaForCausalLM(cfg).eval(), tok


@pytest.fixture(scope="module")
def pipeline():
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8,), latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                                  norm_num_groups=4, sample_size=8)
    tok = _tokenizer(max_length=16)
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, projection_dim=16, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id))
    return diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                             scheduler=diffusers.EulerDiscreteScheduler(steps_offset=1), safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)


class TinyCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.act = torch.nn.ReLU()
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3)))


def test_llm_proposer_prompts_a_chat_model_and_parses_its_answer(llm):
    model, tok = llm
    p = LLMProposer(model, tokenizer=tok, max_new_tokens=6, seed=3)
    ranked = [("dog", 0.9), ("car", 0.4)]
    a = p.propose(ranked, ["dog", "car"], "iterate", np.random.default_rng(0))
    b = p.propose(ranked, ["dog", "car"], "iterate", np.random.default_rng(0))
    assert a.concept == b.concept and a.raw == b.raw  # seeded sampling
    assert a.concept and isinstance(a.raw, str)
    assert "dog: 0.900" in a.prompt and "dog, car" in a.prompt  # history and forbidden list in the prompt
    s = p.propose(ranked, ["dog", "car"], "summary", np.random.default_rng(0))
    assert "{tried}" not in s.prompt and "car: 0.400" in s.prompt
    assert p.settings()["prompts"] == {"iterate": "line_iterate.txt", "summary": "line_summary.txt"}
    assert "<answer>" in read_prompt("iterate")


def test_llm_proposer_reads_a_prompt_file_and_refuses_one_without_placeholders(llm, tmp_path):
    model, tok = llm
    good = tmp_path / "p.txt"
    good.write_text("History:\n{concepts}\nTried: {tried}\n<answer>")
    p = LLMProposer(model, tokenizer=tok, max_new_tokens=4, prompt_iterate=str(good))
    assert p.propose([("dog", 0.5)], ["dog"], "iterate", np.random.default_rng(0)).prompt.startswith("History:\ndog")
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholders")
    with pytest.raises(ValueError, match="lacks"):
        LLMProposer(model, tokenizer=tok, prompt_iterate=str(bad))


def test_diffusers_generator_batches_seeded_images(pipeline):
    g = DiffusersGenerator(pipeline, n_images=5, steps=1, batch_size=3, device="cpu")
    out = g.generate("red fruit")
    assert len(out.images) == 5 and out.prompts == image_prompts("red fruit", 5)
    assert out.image_ids == [f"gen:red fruit#{i}" for i in range(5)]
    arrays = [np.asarray(im) for im in out.images]
    assert arrays[0].shape[-1] == 3 and not np.array_equal(arrays[0], arrays[1])  # seeds differ
    again = DiffusersGenerator(pipeline, n_images=5, steps=1, batch_size=5, device="cpu").generate("red fruit")
    assert np.array_equal(np.asarray(again.images[4]), arrays[4])  # seed i -> image i, whatever the batching
    assert g.generate("red fruit") is out  # cached per concept


def test_generative_loop_runs_end_to_end(llm, pipeline):
    """LLM proposer + diffusion generator + the target model's forward hook through the whole loop."""
    from neuronaudit.explainers.line.targets import ModelActivations

    model, tok = llm
    torch.manual_seed(0)
    target = ModelActivations(LoadedModel(TinyCNN().eval(), image_transform(8, (0.5,) * 3, (0.5,) * 3), 8, {}),
                              "act", device="cpu")
    rng = np.random.default_rng(0)
    classes = ["dog", "car", "boot", "bag"]
    emb = rng.normal(size=(4, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)

    def embed(concepts):  # a stand-in for MiniLM: fixed random vectors per text
        out = np.stack([np.random.default_rng(zlib.crc32(c.encode())).normal(size=8) for c in concepts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    control = ControlSampler(rng.normal(size=(40, 6)).astype(np.float32), np.arange(40) % 4, classes, emb, embed)
    proposer = LLMProposer(model, tokenizer=tok, max_new_tokens=5)
    generator = DiffusersGenerator(pipeline, n_images=5, steps=1, device="cpu")
    h = run_neuron(3, proposer, generator, target, control, LoopSettings(n_best=2, n_random=2, iterations=2))
    assert len(h) == 4 + 2 + 1
    assert all(len(a) == 5 for a in h["activations"]) and np.isfinite(h["score"]).all()
    assert (h.loc[h["phase"] != "init", "llm_prompt"] != "").all() and (h.loc[h["phase"] == "init", "raw"] == "").all()
    assert '"diffusers"' in h["backends"].iloc[0] and '"llm"' in h["backends"].iloc[0]
    assert replay(h, size=4) == {3: (h["best_concept"].iloc[-1], h["best_score"].iloc[-1])}

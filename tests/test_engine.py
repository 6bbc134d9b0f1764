"""The round loop on the micro organism: files, records, selection, log-probs and resume."""
from __future__ import annotations

import json
import queue

import numpy as np
import pytest
import torch

from silab.config import load_profile
from silab.engine.tokens import encode_prompt
from silab.engine import session
from silab.engine.__main__ import Engine
from silab.engine.loop import Control, Paused
from silab.engine.organism import PRESETS, build_model, build_tokenizer
from silab.engine.select import best_of_n, measure, pass_at_k, roc_auc
from silab.engine.verifiers import expected_grade, true_share
from silab.errors import UsageError
from silab.protocol import (ERROR, INJECT, PLAN_CHANGED, ROUND_FINISHED, RUN, SET, SETTINGS_CHANGED, STEP, STOP,
                            VERSION, WAITING)
from silab.runs.store import read_records

RECORD_KEYS = {"round", "U_s", "U_v", "G", "U_s_tok", "U_v_tok", "G_tok", "solver_acc", "verifier_acc",
               "test_acc", "test_greedy_acc", "judge_auc", "judge_agreement", "fallbacks", "n_prompts",
               "n_samples", "sigma", "lr", "external", "seconds"}


def run_rounds(profile, run_dir, upto: int, resume: bool = False):
    events = []
    start = session.resume_run(run_dir) if resume else session.new_run(profile, str(run_dir))
    loop = start.loop(events.append)
    while loop.next_round <= upto:
        loop.run_round()
    return loop, events


@pytest.fixture
def micro_profile(micro):
    path, overrides = micro
    return load_profile(path, overrides)


def test_rounds_write_complete_records_and_files(micro_profile, tmp_path):
    loop, events = run_rounds(micro_profile, tmp_path / "run", 2)
    records = read_records(tmp_path / "run")
    assert [r["round"] for r in records] == [0, 1, 2]
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert r["G"] == pytest.approx(r["U_s"] - r["U_v"])
        for key in ("solver_acc", "verifier_acc", "test_acc", "test_greedy_acc", "judge_agreement"):
            assert 0.0 <= r[key] <= 1.0
    assert records[0]["seconds"]["train"] == 0 and records[1]["seconds"]["train"] > 0
    run = tmp_path / "run"
    assert not (run / "rounds" / "000" / "adapter").exists()
    assert (run / "rounds" / "001" / "adapter" / "adapter_model.safetensors").is_file()
    rows = [json.loads(line) for line in (run / "rounds" / "001" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == micro_profile.task.n_prompts
    assert all(len(r["responses"]) == micro_profile.sampling.n_samples for r in rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert {"python", "torch", "transformers", "peft", "seed", "started"} <= set(manifest)
    kinds = [e["event"] for e in events]
    assert kinds.count("round_finished") == 3 and kinds[0] == "run_started"
    on_disk = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert on_disk == kinds


def test_resume_gives_the_same_numbers_as_an_uninterrupted_run(micro_profile, tmp_path):
    run_rounds(micro_profile, tmp_path / "whole", 2)
    run_rounds(micro_profile, tmp_path / "split", 1)
    run_rounds(None, tmp_path / "split", 2, resume=True)
    whole, split = read_records(tmp_path / "whole"), read_records(tmp_path / "split")
    for a, b in zip(whole, split):
        for key in ("U_s", "U_v", "solver_acc", "verifier_acc", "test_acc"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["round"], key)


def test_a_paused_round_runs_again_from_the_last_saved_round(micro_profile, tmp_path):
    run_rounds(micro_profile, tmp_path / "whole", 1)
    loop, _ = run_rounds(micro_profile, tmp_path / "paused", 0)
    loop.control.pause_requested = True
    with pytest.raises(Paused):
        loop.run_round()                     # round 1 stops after its training phase
    assert loop.next_round == 1 and not (tmp_path / "paused" / "rounds" / "001").exists()
    loop.control.pause_requested = False
    loop.run_round()                         # from round 0's policy again, not the half-trained one
    whole, paused = read_records(tmp_path / "whole"), read_records(tmp_path / "paused")
    for key in ("U_s", "U_v", "solver_acc", "verifier_acc", "test_acc"):
        assert whole[1][key] == pytest.approx(paused[1][key], abs=1e-6), key


def test_settings_change_mid_run_through_update(micro_profile, tmp_path):
    loop, _ = run_rounds(micro_profile, tmp_path / "run", 0)
    written = tmp_path / "run" / "profile.toml"
    before = written.read_text()
    with pytest.raises(UsageError, match="verify.sigma"):
        loop.update(["verify.sigma=7"], "set")
    assert written.read_text() == before and loop.p == micro_profile     # refused: nothing changed
    loop.update(["verify.sigma=0.7", "rounds=3"], "set")
    assert load_profile(str(written)) == loop.p and loop.p.rounds == 3
    assert loop.run_round()["sigma"] == 0.7 and loop.next_round == 2     # from the next round on


def test_the_engine_process_steers_the_loop_with_protocol_commands(micro, tmp_path):
    path, overrides = micro
    profile = load_profile(path, overrides + ["task.n_external=4"])      # rounds = 2
    commands, control, events = queue.Queue(), Control(), []
    for cmd in ({"cmd": SET, "sigma": 0.7}, {"cmd": STEP}, {"cmd": INJECT, "schedule": "early"},
                {"cmd": SET, "rounds": 1, "lr": 2.0}, {"cmd": RUN}, {"cmd": STOP}):
        commands.put(cmd)
    loop = session.new_run(profile, tmp_path / "run").loop(events.append, control)
    Engine(loop, control, commands).serve()
    kinds = [e["event"] for e in events]
    assert events[0]["protocol"] == VERSION and kinds.count(ROUND_FINISHED) == 3 and kinds[-1] == WAITING
    changed = next(e for e in events if e["event"] == SETTINGS_CHANGED)
    assert changed["settings"] == {"sigma": 0.7} and changed["from_round"] == 0
    assert next(e for e in events if e["event"] == PLAN_CHANGED)["schedule"] == [1.0, 0.0]
    refused = [e for e in events if e["event"] == ERROR]   # lr = 2 is out of range: the whole set is refused
    assert len(refused) == 1 and "train.lr" in refused[0]["message"]
    records = read_records(tmp_path / "run")
    assert [(r["sigma"], r["external"]) for r in records] == [(0.7, 0), (0.7, 4), (0.7, 0)]
    assert load_profile(str(tmp_path / "run" / "profile.toml")) == loop.p and loop.p.rounds == 2


def test_sample_logprobs_match_a_teacher_forced_pass(micro_profile, tmp_path):
    """The solver's log-probs come from generation logits; they must be the model's raw ones."""
    loop, _ = run_rounds(micro_profile, tmp_path / "run", 0)
    backend = loop.backend
    prompts = loop.prompts[:3]
    samples = backend.sample(prompts, 4, seed=7, progress=lambda d, n: None)
    tok = backend.tok
    for prompt, row in zip(prompts, samples):
        for s in row:
            p_ids = tok.encode(prompt, add_special_tokens=False)
            r_ids = s.tokens
            assert len(r_ids) == s.n_tokens and tok.decode(r_ids, skip_special_tokens=True) == s.text
            ids = torch.tensor([p_ids + r_ids])
            with torch.no_grad():
                logp = backend.model(input_ids=ids).logits.log_softmax(-1)[0]
            expected = sum(logp[len(p_ids) - 1 + i, tok_id].item() for i, tok_id in enumerate(r_ids))
            assert s.logprob == pytest.approx(expected, abs=1e-3)


def test_best_of_n_prefers_low_nll_among_passing_and_falls_back_to_the_best_score():
    logprob = np.array([[-1.0, -3.0, -0.5], [-1.0, -2.0, -3.0]])
    length = np.array([[1, 3, 1], [1, 1, 1]])
    score = np.array([[0.9, 0.8, 0.2], [0.1, 0.4, 0.3]])
    picks, fallback = best_of_n(logprob, length, score, sigma=0.5)
    # prompt 0: samples 0 and 1 pass; normalised NLL 1.0 vs 1.0 -> first; sample 2 fails sigma
    assert picks.tolist() == [0, 1] and fallback.tolist() == [False, True]
    correct = np.array([[True, False, False], [False, True, False]])
    m = measure(logprob, length, score, correct, picks, fallback, 0.5)
    assert m["U_s"] == pytest.approx(np.mean([4.5 / 3, 2.0]))
    assert m["U_v"] == pytest.approx(np.mean([1.0, 2.0]))
    assert m["verifier_acc"] == 1.0 and m["solver_acc"] == pytest.approx(2 / 6)
    assert m["likelihood_pick_acc"] == 0.0 and m["fallbacks"] == 1  # lowest NLL: samples 2 and 0


def test_judge_scores():
    assert true_share(np.array([[0.3, 0.1]]))[0] == pytest.approx(0.75)
    assert expected_grade(np.array([[0.0, 0.0, 1.0]]))[0] == pytest.approx(1.0)
    assert expected_grade(np.array([[0.5, 0.0, 0.5]]))[0] == pytest.approx(0.5)
    assert roc_auc(np.array([0.9, 0.8, 0.3, 0.3]), np.array([1, 0, 1, 0])) == pytest.approx(0.625)
    assert roc_auc(np.array([0.1, 0.2]), np.array([1, 1])) is None


@pytest.mark.parametrize("n, c, k, expected", [
    (5, 2, 2, 1 - 3 / 10), (4, 0, 1, 0.0), (4, 4, 4, 1.0), (10, 3, 1, 0.3), (16, 1, 16, 1.0), (16, 1, 8, 0.5),
])
def test_pass_at_k_exact_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_organism_is_deterministic_and_loads_like_a_hub_model(organism_cache, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    from silab.engine.organism import ensure_organism

    first, again = ensure_organism("micro", organism_cache), ensure_organism("micro", tmp_path)
    assert first.name == again.name  # same spec, same cache key
    a, b = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tok = AutoTokenizer.from_pretrained(again)
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.decode(tok.encode("47+38=85?True", add_special_tokens=False)) == "47+38=85?True"
    model = AutoModelForCausalLM.from_pretrained(again)
    assert model.config.model_type == "llama" and model.num_parameters() < 5_000_000


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_organism_heads_are_32_wide_as_vllm_cpu_attention_needs(preset):
    """vLLM's CPU attention refuses head_dim 24 ("Unsupported CPU attention configuration")."""
    model = build_model(PRESETS[preset], build_tokenizer())
    attention = model.model.layers[0].self_attn
    assert model.config.head_dim == 32 and attention.head_dim == 32
    assert attention.q_proj.out_features == model.config.num_attention_heads * 32


@pytest.mark.parametrize("method, yes, no", [("tf", "True", "False"), ("qe", "5", "1")])  # tests/micro.toml's
def test_training_set_rehearses_the_judges_own_verdicts(micro, tmp_path, method, yes, no):
    path, overrides = micro
    profile = load_profile(path, overrides + [f"verify.method={method}"])
    loop, _ = run_rounds(profile, tmp_path / "run", 0)
    examples, external = loop.training_set(1)
    tok, end = loop.backend.tok, loop.backend.end_id
    # a pick trains on exactly the ids it was sampled as (and U_v measured), end of turn included
    picks = [(encode_prompt(tok, row["prompt"]), row["responses"][row["pick"]]["tokens"]) for row in loop.prev]
    assert examples[:len(picks)] == picks and external == []
    verdicts = [(p, tok.decode(t[:-1])) for p, t in examples[len(picks):] if t[-1] == end]
    assert len(verdicts) == len(examples) - len(picks)
    scores = [r["score"] for row in loop.prev for r in row["responses"]]
    assert all(0.0 <= s <= 1.0 for s in scores)
    expected = sum(max(r["score"] for r in row["responses"]) >= 0.5 for row in loop.prev) + \
        sum(min(r["score"] for r in row["responses"]) < 0.5 for row in loop.prev)
    assert len(verdicts) == expected and {answer for _, answer in verdicts} <= {yes, no}

"""The language-model judge: P(supported | evidence, claim) read from next-token log-probabilities.

The model is asked a yes/no question and never generates: one forward pass over the prompt gives the
distribution of the next token, and P(supported) is the probability mass of the "Yes" spellings over
that of "Yes" and "No" together. No prose is parsed.

Prompt layout (``judge@1``): the evidence block first, the claim last, so that the claims of one answer,
which share the evidence block, reuse llama.cpp's KV cache: only the claim's tokens are prefilled again.

    judge = LlamaJudge.load("qwen2.5-coder-1.5b", models_dir)
    judge.p_supported("Evidence:\\n[1] The warranty lasts two years.", "The warranty lasts 2 years.")

Any OpenAI-compatible endpoint that returns ``top_logprobs`` can be the judge too (``OpenAIJudge``).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

PROMPT_VERSION = "judge@1"

SYSTEM = ("You are a strict fact checker. You decide whether a claim is fully supported by the evidence. "
          "A claim is supported only if the evidence states it or directly implies it. Claims that add facts, "
          "numbers or names the evidence does not contain, or that contradict it, are not supported.")
QUESTION = "Is the claim fully supported by the evidence? Answer Yes or No."

YES_WORDS = ("Yes", " Yes", "yes", " yes", "YES")
NO_WORDS = ("No", " No", "no", " no", "NO")


# answer-judge@2: @1 asked only "Do the documents state that the proposed answer is the answer to the
# question?"; spelling out that related facts, or the answer stated about something else, are a No separated
# served answers better on both question sets measured (README: AUROC 0.853 vs 0.846 on 0-49, 0.739 vs
# 0.705 on 50-74) and serves fewer wrong ones at every threshold that keeps the right ones.
ANSWER_PROMPT_VERSION = "answer-judge@2"
ANSWER_QUESTION = ("Answer Yes only if a document explicitly gives the proposed answer as the answer to this exact "
                   "question, about the same person, thing, event, date and quantity the question names. If the "
                   "documents only mention related facts, or state the answer about something else, answer No. "
                   "Answer Yes or No.")


def numbered(texts: list[str]) -> str:
    """Texts as the judge reads them: one a line, numbered from [1] like the answer's citations."""
    return "\n".join(f"[{i}] {text.strip()}" for i, text in enumerate(texts, start=1))


def answer_prompt(documents: list[str], question: str, answer: str, instruction: str = ANSWER_QUESTION) -> str:
    """The answer-level question: the whole answer against the passages the model read (not claim by claim),
    so that true words in the wrong relation ("Ramos chaired the final" for "Who won?") are caught.
    ``instruction`` is the closing yes/no question (another wording is for benchmarks/answer_judge_replay.py)."""
    return (f"Documents:\n{numbered(documents)}\n\nQuestion: {question.strip()}\nProposed answer: "
            f"{answer.strip()}\n\n{instruction}")


def evidence_block(evidence: list[str]) -> str:
    """The shared first part of every prompt for one answer: numbered evidence sentences."""
    return "Evidence:\n" + numbered(evidence)


def chat_prompt(user_text: str, system: str = SYSTEM) -> str:
    """One user turn after ``system`` in the models' chat template, ending where the assistant's reply begins."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user_text}<|im_end|>\n<|im_start|>assistant\n"


def claim_prompt(evidence_text: str, claim: str) -> str:
    """A claim's user turn: the evidence block first, so the claims of one answer share its KV cache."""
    return f"{evidence_text}\n\nClaim: {claim.strip()}\n\n{QUESTION}"


class Judge(Protocol):
    model: str

    def p_supported(self, evidence_text: str, claim: str) -> float:
        """P(the evidence supports the claim), from the answer options' log-probabilities."""

    def p_yes(self, user_text: str) -> float:
        """P(Yes) to a yes/no question put as ``user_text`` (after the fact checker's system prompt)."""


def _two_way(yes_logprob: float, no_logprob: float) -> float:
    if yes_logprob == -math.inf and no_logprob == -math.inf:
        return 0.5
    top = max(yes_logprob, no_logprob)
    yes, no = math.exp(yes_logprob - top), math.exp(no_logprob - top)
    return yes / (yes + no)


@dataclass
class JudgeCall:
    p_supported: float
    prompt_tokens: int
    prefilled_tokens: int  # tokens actually evaluated (the rest came from the KV cache)


class LlamaJudge:
    """A llama.cpp model as judge. Shares the process-wide model instance with the answer stage."""

    def __init__(self, loaded, model: str):
        self.loaded = loaded  # answer.providers.local.LoadedModel: .llama and .lock
        self.model = model
        llama = loaded.llama
        self._yes_ids = self._token_ids(YES_WORDS)
        self._no_ids = self._token_ids(NO_WORDS)
        if not self._yes_ids or not self._no_ids:
            raise ValueError(f"{model}: the tokenizer has no single token for Yes/No")
        self._n_vocab = llama.n_vocab()
        self.last_call: JudgeCall | None = None

    @classmethod
    def load(cls, model: str, models_dir: Path, n_ctx: int = 2048, n_threads: int = 2,
             weights: str = "shipped") -> "LlamaJudge":
        """``weights`` as the local provider's (ATTEST_LOCAL_WEIGHTS), so that a judge that is also an answer
        model shares its one loaded instance instead of holding a second copy of the model."""
        from answer.providers.local import load_model

        return cls(load_model(model, models_dir, n_ctx, n_threads, weights), model)

    def _token_ids(self, words) -> list[int]:
        ids = set()
        for word in words:
            tokens = self.loaded.llama.tokenize(word.encode("utf-8"), add_bos=False, special=False)
            if len(tokens) == 1:
                ids.add(tokens[0])
        return sorted(ids)

    def _next_token_logits(self, tokens: list[int]) -> tuple[np.ndarray, int]:
        llama = self.loaded.llama
        if len(tokens) >= llama.n_ctx():
            raise ValueError(f"judge prompt of {len(tokens)} tokens exceeds the context of {llama.n_ctx()}")
        cached = llama.input_ids[: llama.n_tokens]
        prefix = 0
        for a, b in zip(cached, tokens):
            if a != b:
                break
            prefix += 1
        prefix = min(prefix, len(tokens) - 1)  # at least one token is evaluated, to produce fresh logits
        llama.n_tokens = prefix  # eval() drops the KV cache from here on and appends the rest
        llama.eval(tokens[prefix:])
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(self._n_vocab,)).astype(np.float64)
        return logits, len(tokens) - prefix

    def p_supported(self, evidence_text: str, claim: str) -> float:
        return self.p_yes(claim_prompt(evidence_text, claim))

    def p_yes(self, user_text: str) -> float:
        return self.p_yes_of_prompt(chat_prompt(user_text))

    def p_yes_of_prompt(self, prompt: str) -> float:
        """P(Yes) as the next token after ``prompt``, a whole chat prompt (``chat_prompt``)."""
        llama = self.loaded.llama
        with self.loaded.lock:
            tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            logits, evaluated = self._next_token_logits(tokens)
        top = logits.max()
        logprobs = logits - (top + np.log(np.exp(logits - top).sum()))
        yes = float(np.logaddexp.reduce(logprobs[self._yes_ids]))
        no = float(np.logaddexp.reduce(logprobs[self._no_ids]))
        p = _two_way(yes, no)
        self.last_call = JudgeCall(p, len(tokens), evaluated)
        return p


class OpenAIJudge:
    """Any OpenAI-compatible chat endpoint that returns ``logprobs``/``top_logprobs`` (OpenAI, vLLM,
    llama.cpp's server). The first generated token's top alternatives give P(Yes) against P(No)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0,
                 transport=None):
        import httpx

        self.model = model
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                                    transport=transport)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> "OpenAIJudge":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return cls(settings.openai_base_url, settings.grounding_judge_model_name, key,
                   settings.openai_total_timeout_s)

    def p_supported(self, evidence_text: str, claim: str) -> float:
        return self.p_yes(claim_prompt(evidence_text, claim))

    def p_yes(self, user_text: str) -> float:
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user_text}],
            "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 10,
        }
        response = self._client.post("/chat/completions", json=body)
        response.raise_for_status()
        choice = response.json()["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or []
        if not content:
            raise ValueError(f"{self.model}: the endpoint returned no logprobs; it cannot serve as the judge")
        yes, no = -math.inf, -math.inf
        for alt in content[0].get("top_logprobs") or []:
            word = alt.get("token", "").strip().lower()
            if word == "yes":
                yes = float(np.logaddexp(yes, alt["logprob"]))
            elif word == "no":
                no = float(np.logaddexp(no, alt["logprob"]))
        return _two_way(yes, no)

    def close(self) -> None:
        self._client.close()

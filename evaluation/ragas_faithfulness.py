"""ragas Faithfulness with a packaged local model wrapped as ragas' LLM.

ragas splits the answer into statements with the LLM, then asks it which statements the contexts
support; Faithfulness is the supported share. It is the offline reference attest's own verifier is
compared with (``attest eval golden --ragas``, ``benchmarks/grounding.py``). It costs several LLM calls
per answer: 30-60 s per answer with the 1.5B model on 2 cores, so it is opt-in.

    faithfulness = RagasFaithfulness.load("qwen2.5-coder-1.5b", settings.models_dir)
    faithfulness.score(question, answer, [passage texts])   # 0..1, or None when the model's output failed
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")


def _local_llm_class():
    """Defined lazily: importing ragas takes seconds, and only evaluation runs need it."""
    from langchain_core.outputs import Generation, LLMResult
    from ragas.llms.base import BaseRagasLLM

    class LocalRagasLLM(BaseRagasLLM):
        """ragas' LLM interface over one llama.cpp model (greedy decoding: reproducible scores)."""

        def __init__(self, loaded, max_tokens: int = 512):
            super().__init__()
            self.loaded = loaded
            self.max_tokens = max_tokens

        def generate_text(self, prompt, n=1, temperature=0.01, stop=None, callbacks=None):
            with self.loaded.lock:
                out = self.loaded.llama.create_chat_completion(
                    messages=[{"role": "user", "content": prompt.to_string()}], max_tokens=self.max_tokens,
                    temperature=0.0, stop=stop)
            return LLMResult(generations=[[Generation(text=out["choices"][0]["message"]["content"] or "")]])

        async def agenerate_text(self, prompt, n=1, temperature=0.01, stop=None, callbacks=None):
            return self.generate_text(prompt, n, temperature, stop, callbacks)

        def is_finished(self, response):
            return True

    return LocalRagasLLM


class RagasFaithfulness:
    def __init__(self, llm, model_name: str):
        from ragas.metrics import Faithfulness

        self.model_name = model_name
        self.metric = Faithfulness(llm=llm)

    @classmethod
    def load(cls, model_name: str, models_dir: Path, n_ctx: int = 4096, n_threads: int = 2) -> "RagasFaithfulness":
        from answer.providers.local import load_model

        return cls(_local_llm_class()(load_model(model_name, models_dir, n_ctx, n_threads)), model_name)

    def score(self, question: str, answer: str, contexts: list[str]) -> float | None:
        """The supported share of the answer's statements; None when the small model's output could not be
        parsed (ragas raises) or it produced no statements: counted as missing, never as faithful."""
        from ragas.dataset_schema import SingleTurnSample

        sample = SingleTurnSample(user_input=question, response=answer, retrieved_contexts=contexts or [""])
        try:
            value = asyncio.run(self.metric.single_turn_ascore(sample))
        except Exception:  # noqa: BLE001 - ragas raises on output it cannot parse
            return None
        return None if value != value else float(value)  # NaN: no statements extracted

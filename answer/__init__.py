"""The answer stage: prompts, providers, routing, fallback chain, semantic cache and token budgets."""

from answer.passages import NumberedPassages
from answer.pipeline import AnswerPipeline
from answer.result import AnswerResult, AnswerSentence, Attempt, Citation, TokenCounts
from answer.usage import Principal

__all__ = ["AnswerPipeline", "AnswerResult", "AnswerSentence", "Attempt", "Citation", "NumberedPassages",
           "Principal", "TokenCounts"]

"""The answer stage: prompts, providers, routing, fallback chain, semantic cache and token budgets."""

from answer.pipeline import AnswerPipeline, answer_question
from answer.result import AnswerResult, AnswerSentence, Attempt, Citation, TokenCounts
from answer.usage import Principal

__all__ = ["AnswerPipeline", "AnswerResult", "AnswerSentence", "Attempt", "Citation", "Principal", "TokenCounts",
           "answer_question"]

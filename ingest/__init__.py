"""Ingest: files -> sections -> chunks -> dense + BM25 vectors -> the vector store, with a manifest."""

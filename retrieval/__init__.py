"""Retrieval: the vector store, the text encoders that define the index, hybrid search and reranking."""

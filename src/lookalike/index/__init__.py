"""On-disk indexes: feature shards, the ASMK inverted file and the global FAISS index."""

"""Unsupervised learning on the collection: PCA-whitening, k-means vocabulary, model bundles."""

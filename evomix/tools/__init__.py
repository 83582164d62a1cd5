"""Commands built on the pipeline: rank, vary, explore, measure files, learn profiles, fit a reference mix."""

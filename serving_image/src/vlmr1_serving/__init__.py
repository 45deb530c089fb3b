"""vlmr1 serving: the serving image entry point (engine argv, checkpoint fetch, metrics)."""

"""vlmr1 trainer: GRPO training of vision-language models on verifiable rewards."""

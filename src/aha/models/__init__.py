"""Policy, reference and tokenizer loading; the embedded tiny base model."""

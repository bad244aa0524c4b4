"""Helpers the tests share: composing the real configs, offline W&B runs and their records, folder trees, commands
run side by side."""

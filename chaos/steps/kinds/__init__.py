"""The step kinds, one file each; each registers itself (chaos.steps.registry)."""

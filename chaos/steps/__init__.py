"""The step-kind catalogue: one small module per kind under kinds/ (how it is
parsed, what it does, how it is described), registered by name, behind the
StepKind interface (kind.py). The runner hands each step a narrow
StepContext (context.py) and gets a typed Outcome (outcome.py) back; the
expectations are judged once, for every kind, in verdicts.py.
"""

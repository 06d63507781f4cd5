"""Assessment: a scoped configuration becomes jobs, measured findings, a risk score and reports.

Import the parts you need, e.g. ``from invguard.assess.engine import run_assessment``.
"""

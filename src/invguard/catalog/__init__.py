"""The catalogue: every attack (:mod:`~invguard.catalog.attacks`) and every finding rule with its
references (:mod:`~invguard.catalog.rules`), registered once; assessments, reports and SARIF read
them from here."""

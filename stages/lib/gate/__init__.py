"""The review gate: paired bootstrap, criteria, the decision rule, checklist evidence and the ADR."""

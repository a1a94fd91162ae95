"""Bridges to other tools (lm-evaluation-harness). Each module imports its tool at its top; import it lazily."""

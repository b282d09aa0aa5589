"""Policy engine: versioned rulesets, decision records, replay (issue 4)."""

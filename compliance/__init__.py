"""KYC, responsible gambling, AML, PII vault, cases, appeals and the gate (issues 4 and 5)."""

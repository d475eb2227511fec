"""Users, roles and API tokens: who may do what (TRIAGE_AUTH_MODE=dev|token)."""

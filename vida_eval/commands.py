"""Registry of the sub-commands beyond parse/score/submit (data, models, inference)."""

REGISTER: list = []

"""How the course judges what models and retrievers did: eval sets, scorers and metrics, kept away from the
teaching cells (a notebook shows one short call beside each answer; the rule lives here or in data/)."""

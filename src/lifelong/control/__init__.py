"""The controls: ledger, gate, governor, triggers, budgets, resets and monitors."""

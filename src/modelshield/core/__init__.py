"""The small core: findings, rules, policy, sources, sniffing, the engine and the report object."""

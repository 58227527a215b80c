"""policy_enforcer package."""

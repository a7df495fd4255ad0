"""The audit trail: every change, who made it, acting as which account, before and after."""

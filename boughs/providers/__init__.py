"""The tenant: every row of every table belongs to one provider."""

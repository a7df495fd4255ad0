"""Who is asking: users, API tokens and the actor a request runs as."""

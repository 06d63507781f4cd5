"""Gateway: serving models behind an output policy, authentication and rate limits."""

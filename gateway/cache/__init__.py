"""The response cache: exact answers served again, per team, streamed or not."""

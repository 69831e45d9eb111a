"""`bench run`: the pipeline from suite to leaderboard, and the thin Ray Tune glue around trials."""

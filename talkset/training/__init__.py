"""talkset training."""

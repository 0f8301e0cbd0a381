"""talkset models."""

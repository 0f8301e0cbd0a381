"""talkset deployments."""

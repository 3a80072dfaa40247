"""Code environment: Python/shell in a fresh bubblewrap jail per call; reward from hidden unit tests."""

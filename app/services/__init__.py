"""What the routes do, kept out of the routes: API keys and chat."""

"""The engine tier (pytest marker `engine`): the real Pulumi engine on a test project."""

HMAC_SECRET = "engine-test-hmac-0123456789"  # the test program's; never in state in plain text

"""RunPod as code: a REST API v1 client and Pulumi dynamic providers for templates and endpoints."""

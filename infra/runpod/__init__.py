"""RunPod as code: Pulumi dynamic providers for templates, endpoints, registry credentials and
secrets over runpod_api's REST API v2 client."""

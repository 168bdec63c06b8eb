"""The Pulumi program (GCP + RunPod), built in its own issue."""

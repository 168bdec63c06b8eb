"""RunPod serverless workers: plain `handle(job)` functions that the runpod SDK or the API runs."""

"""A local stand-in for RunPod serverless: its control plane and its job API in front of real
worker processes.

`python -m gpu_worker.emulator --port P [--endpoint NAME=MODULE]... [--image IMAGE=MODULE]...`
serves RunPod's REST API v1 for templates and endpoints under `/v1` (an endpoint made there runs
its template's image as `python -m MODULE` workers) and the job API
`/v2/ID/{run,runsync,status,stream,cancel,retry,purge-queue,health}` as RunPod does, feeding the
jobs to the workers through the routes the runpod SDK's job loop calls (`job-take`, `job-done`,
`job-stream`, `job-stop`). `runpod.Endpoint` works against it with
RUNPOD_ENDPOINT_BASE_URL=http://HOST:P/v2, and Pulumi (infra.runpod) with the stack setting
tandem:runpodApiBase=http://HOST:P/v1.
"""

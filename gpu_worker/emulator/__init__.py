"""A local stand-in for RunPod serverless: the public job API in front of real worker processes.

`python -m gpu_worker.emulator --port P --endpoint NAME=MODULE [...]` serves
`/v2/NAME/{run,runsync,status,stream,cancel,retry,purge-queue,health}` as RunPod does and feeds
the jobs to `python -m MODULE` processes through the routes the runpod SDK's job loop calls
(`job-take`, `job-done`, `job-stream`, `job-stop`). `runpod.Endpoint` works against it with
RUNPOD_ENDPOINT_BASE_URL=http://HOST:P/v2.
"""

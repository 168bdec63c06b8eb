"""The local RunPod: RunPod serverless on this machine, for `make dev` and the tests.

`python -m runpod_api.emulator --port P [--endpoint ID=MODULE]... [--image IMAGE=MODULE]...`
serves RunPod's REST API v2 control plane (`/v2/serverless`, `/v2/templates`, `/v2/registries`,
`/v2/account/secrets`, `/v2/catalog/gpus`, `/v2/billing/serverless`; every body checked against
runpod_api's copy of RunPod's spec) and the job API
`/v2/ID/{run,runsync,status,stream,cancel,retry,purge-queue,health}` on the same port. An
endpoint made through the control plane runs its image as `python -m MODULE` worker processes
under the runpod SDK's real job loop (`job-take`, `job-done`, `job-stream`, `job-stop`). Point
`runpod.Endpoint` at it with RUNPOD_ENDPOINT_BASE_URL=http://HOST:P/v2, Pulumi with the stack
setting tandem:runpodApiBase=http://HOST:P and the API with RUNPOD_REST_API=http://HOST:P.
"""

"""RunPod's control plane, the one home of it: the REST API v2 client (client.py), its typed
request bodies (models.py), the spec they are checked against (spec.py and the JSON files beside
it), the GPU catalog in users' words (catalog.py), the names of what Tandem makes there
(names.py) and a local RunPod (emulator/). app, infra, stacks, tests and bench import it; it
imports none of them."""

#!/usr/bin/env python3
"""Talk to `modelcast predict --http --grpc` with kserve's own Open Inference Protocol clients
(InferenceRESTClient with protocol v2, InferenceGRPCClient); print what they got as JSON.

    python oip_kserve_check.py HTTP_ADDR GRPC_ADDR MODEL ROWS.json

ROWS.json as for oip_client_check.py. Run by tests/it/inference.rs in the test bed's checkers
venv (scripts/requirements-export.txt); a process of its own, because kserve and tritonclient
register the same protobuf names.
"""
import asyncio
import json
import sys

import numpy as np
async def over_kserve(http: str, grpc: str, model: str, columns: list, rows) -> dict:
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

    def request() -> InferRequest:
        inputs = []
        for j, name in enumerate(columns):
            t = InferInput(name=name, shape=[len(rows)], datatype="FP64")
            t.set_data_from_numpy(rows[:, j].copy())
            inputs.append(t)
        return InferRequest(model_name=model, infer_inputs=inputs, request_id="kserve")

    out = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=30))
    base = f"http://{http}"
    out["rest_ready"] = await rest.is_server_ready(base)
    out["rest_model_ready"] = await rest.is_model_ready(base, model)
    r = await rest.infer(base, request(), model_name=model)
    out["rest"] = {"version": r.model_version, "id": r.id,
                   "prediction": [float(v) for v in r.outputs[0].as_numpy().tolist()]}
    await rest.close()
    g = InferenceGRPCClient(url=grpc, retries=2, timeout=30)
    out["grpc_ready"] = await g.is_server_ready()
    r = await g.infer(request())
    out["grpc"] = {"version": r.model_version, "id": r.id,
                   "prediction": [float(v) for v in r.outputs[0].as_numpy().tolist()]}
    await g.close()
    return out



def main() -> int:
    http, grpc, model, rows_path = sys.argv[1:5]
    spec = json.load(open(rows_path))
    rows = np.array(spec["rows"], dtype=np.float64)
    print(json.dumps(asyncio.run(over_kserve(http, grpc, model, spec["columns"], rows))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

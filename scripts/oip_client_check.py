#!/usr/bin/env python3
"""Talk to `modelcast predict --http` with the Open Inference Protocol's own client,
tritonclient (HTTP), as a user of Triton or KServe would; print what it got as JSON.

    python oip_client_check.py ADDR MODEL ROWS.json [GRPC_ADDR]

ROWS.json: {"columns": [...], "rows": [[...], ...]} (numbers). Printed: server and model
metadata, readiness, and the `prediction` output of four requests: one FP64 tensor per column
(binary tensor data, the client's default), the same as JSON (binary_data=False), one [N, k]
FP32 matrix (binary), and one FP64 matrix asking for the output by name as JSON. With
GRPC_ADDR, the same with tritonclient.grpc (raw tensor contents) under "grpc". (kserve's
clients are scripts/oip_kserve_check.py: the two register the same protobuf names, so they
cannot share a process.)

Run by tests/it/inference.rs in the test bed's checkers venv (scripts/requirements-export.txt).
"""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def main() -> int:
    addr, model, rows_path = sys.argv[1:4]
    spec = json.load(open(rows_path))
    columns, rows = spec["columns"], np.array(spec["rows"], dtype=np.float64)
    client = httpclient.InferenceServerClient(url=addr)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(),
        "model": client.get_model_metadata(model),
        "model_ready": client.is_model_ready(model),
    }

    def named(binary: bool) -> list:
        inputs = []
        for j, name in enumerate(columns):
            t = httpclient.InferInput(name, [len(rows)], "FP64")
            t.set_data_from_numpy(rows[:, j].copy(), binary_data=binary)
            inputs.append(t)
        outputs = None if binary else [httpclient.InferRequestedOutput("prediction", binary_data=False)]
        r = client.infer(model, inputs, outputs=outputs, request_id="named")
        return {"version": r.get_response()["model_version"], "id": r.get_response().get("id"),
                "prediction": r.as_numpy("prediction").tolist()}

    out["named_binary"] = named(True)
    out["named_json"] = named(False)
    m32 = httpclient.InferInput("input-0", list(rows.shape), "FP32")
    m32.set_data_from_numpy(rows.astype(np.float32))
    out["matrix_fp32"] = client.infer(model, [m32]).as_numpy("prediction").tolist()
    m64 = httpclient.InferInput("input-0", list(rows.shape), "FP64")
    m64.set_data_from_numpy(rows, binary_data=False)
    r = client.infer(model, [m64], outputs=[httpclient.InferRequestedOutput("prediction", binary_data=False)])
    out["matrix_fp64"] = r.as_numpy("prediction").tolist()
    # a request the server refuses: the client raises with the server's message
    bad = httpclient.InferInput("no-such-column", [1], "FP64")
    bad.set_data_from_numpy(np.zeros(1))
    try:
        client.infer(model, [bad])
        out["refused"] = None
    except Exception as e:  # tritonclient's InferenceServerException
        out["refused"] = str(e)
    if len(sys.argv) > 4:
        out["grpc"] = over_grpc(sys.argv[4], model, columns, rows)
    print(json.dumps(out))
    return 0


def over_grpc(addr: str, model: str, columns: list, rows) -> dict:
    client = grpcclient.InferenceServerClient(url=addr)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "server": client.get_server_metadata(as_json=True),
        "model": client.get_model_metadata(model, as_json=True),
        "model_ready": client.is_model_ready(model),
    }
    inputs = []
    for j, name in enumerate(columns):
        t = grpcclient.InferInput(name, [len(rows)], "FP64")
        t.set_data_from_numpy(rows[:, j].copy())
        inputs.append(t)
    r = client.infer(model, inputs, request_id="named")
    out["named"] = {"version": r.get_response(as_json=True)["model_version"],
                    "id": r.get_response(as_json=True).get("id"),
                    "prediction": r.as_numpy("prediction").tolist()}
    m32 = grpcclient.InferInput("input-0", list(rows.shape), "FP32")
    m32.set_data_from_numpy(rows.astype(np.float32))
    out["matrix_fp32"] = client.infer(model, [m32]).as_numpy("prediction").tolist()
    bad = grpcclient.InferInput("no-such-column", [1], "FP64")
    bad.set_data_from_numpy(np.zeros(1))
    try:
        client.infer(model, [bad])
        out["refused"] = None
    except Exception as e:  # InferenceServerException: the status and its message
        out["refused"] = str(e)
    return out



if __name__ == "__main__":
    sys.exit(main())

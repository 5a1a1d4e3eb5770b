//! `predict --http`: the Open Inference Protocol over HTTP, run as a user runs it (the real
//! binary, a local store), checked against `modelcast predict` on the same rows.

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::bed::http_get;
use crate::util::{free_addr, sigterm, wait_for, Sandbox, PATIENCE};

/// POST `body` to `addr` + `path`: (status, body as JSON).
pub(crate) fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    post_as(addr, path, body, None)
}

/// [`post`] with `Authorization: Bearer TOKEN`.
fn post_as(addr: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent.post(&format!("http://{addr}{path}")).content_type("application/json");
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.send(body).unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
}

fn get_json(addr: &str, path: &str) -> (u16, Value) {
    let (status, text) = http_get(addr, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
}

/// A running `predict --http`; dropping it kills the process.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(sb: &Sandbox, extra: &[&str]) -> Server {
    let addr = free_addr();
    let mut cmd = sb.command(&["predict", "--http", &addr]);
    cmd.args(extra);
    cmd.cmd().stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn();
    wait_for("predict --http ready", PATIENCE, || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("predict --http exited ({status}) before it was ready");
        }
        match http_get(&addr, "/v2/health/ready") {
            Some((200, _)) => Ok(()),
            r => Err(format!("{r:?}")),
        }
    });
    Server { child, addr }
}

/// The first `n` wine rows: the CSV text (header included), the column names and the input
/// columns as numbers.
fn wine_rows(n: usize) -> (String, Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(crate::util::repo().join("data/winequality-red.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let names: Vec<String> = header.split(',').map(|h| h.trim_matches('"').to_string()).collect();
    let body: Vec<&str> = lines.take(n).collect();
    // the 11 input columns (quality, the label, is left out)
    let rows = body.iter().map(|l| l.split(',').take(11).map(|v| v.parse().unwrap()).collect()).collect();
    (format!("{header}\n{}\n", body.join("\n")), names, rows)
}

pub(crate) fn named_request(names: &[String], rows: &[Vec<f64>], datatype: &str) -> String {
    let inputs: Vec<Value> = names[..11]
        .iter()
        .enumerate()
        .map(|(j, c)| {
            let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            json!({"name": c, "datatype": datatype, "shape": [rows.len()], "data": col})
        })
        .collect();
    json!({"id": "named", "inputs": inputs}).to_string()
}

/// Every prediction `predict --http` returns equals `modelcast predict` on the same rows (named
/// tensors and one FP32 matrix; a tree model and a linear one), the protocol's metadata names
/// the real inputs, bad requests get the protocol's errors and the server keeps serving, and a
/// retrain under request load swaps the model with no failed request and one version change.
#[test]
fn http_inference_matches_predict_and_swaps_under_load() {
    let sb = Sandbox::new();
    let (csv, names, rows) = wine_rows(40);
    let input = sb.write("rows.csv", &csv);
    let shipped = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let forest = shipped
        .replace("  kind: ridge ", "  kind: random_forest\n  n_estimators: 20\n  max_depth: 6\n#")
        .replace("  alpha: 1.0 ", "  # alpha: 1.0 ");
    assert!(forest.contains("random_forest") && !forest.contains("\n  alpha"), "{forest}");
    sb.write("params/forest.yaml", &forest);
    for params in ["params/params.yaml", "params/forest.yaml"] {
        let name = if params.ends_with("forest.yaml") { "wine-forest" } else { "wine-quality" };
        sb.command(&["train", "--params", params, "--name", name]).assert_ok();
        let run = sb.command(&["predict", "--input", input.to_str().unwrap(), "--model-name", name]).assert_ok();
        let want: Vec<f64> = run.stdout_json().iter().map(|p| p["prediction"].as_f64().unwrap()).collect();
        let version = run.stdout_json()[0]["model_version"].as_str().unwrap().to_string();
        assert_eq!(want.len(), rows.len());
        let server = start(&sb, &["--model-name", name]);
        let addr = &server.addr;
        let (status, meta) = get_json(addr, "/v2");
        assert_eq!((status, meta["name"].as_str()), (200, Some("modelcast")), "{meta}");
        let (status, meta) = get_json(addr, &format!("/v2/models/{name}"));
        assert_eq!(status, 200, "{meta}");
        assert_eq!(meta["versions"], json!([version]));
        let inputs: Vec<&str> =
            meta["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(inputs, names[..11].iter().map(String::as_str).collect::<Vec<_>>());
        assert!(meta["inputs"].as_array().unwrap().iter().all(|i| i["datatype"] == "FP64"), "{meta}");
        let (status, _) = get_json(addr, &format!("/v2/models/{name}/versions/{version}/ready"));
        assert_eq!(status, 200);
        // named tensors, FP64: exactly predict's numbers
        let (status, r) = post(addr, &format!("/v2/models/{name}/infer"), &named_request(&names, &rows, "FP64"));
        assert_eq!(status, 200, "{r}");
        assert_eq!((r["model_version"].as_str(), r["id"].as_str()), (Some(version.as_str()), Some("named")));
        let got: Vec<f64> = serde_json::from_value(r["outputs"][0]["data"].clone()).unwrap();
        assert_eq!(got, want, "{params}: named tensors");
        // one [N, 11] FP32 matrix, by version: the same numbers (JSON text is read as written)
        let body =
            json!({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [rows.len(), 11], "data": rows}]});
        let (status, r) = post(addr, &format!("/v2/models/{name}/versions/{version}/infer"), &body.to_string());
        assert_eq!(status, 200, "{r}");
        let got: Vec<f64> = serde_json::from_value(r["outputs"][0]["data"].clone()).unwrap();
        assert_eq!(got, want, "{params}: one matrix");
    }

    // bad requests, each named; the server answers the next good one
    let mut server = start(&sb, &["--model-name", "wine-quality", "--http-max-body", "100000"]);
    let addr = server.addr.clone();
    let infer = "/v2/models/wine-quality/infer";
    let good = named_request(&names, &rows[..1], "FP64");
    let wrong_type = good.replacen("\"FP64\"", "\"BYTES\"", 1);
    let wrong_shape = named_request(&names, &rows[..2], "FP64").replacen("\"shape\":[2]", "\"shape\":[3]", 1);
    let huge = named_request(&names, &vec![rows[0].clone(); 2000], "FP64");
    for (path, body, code, says) in [
        (
            infer,
            good.replacen("\"fixed acidity\"", "\"fixed_acidity\"", 1),
            400,
            "input \"fixed_acidity\" is not an input",
        ),
        (infer, wrong_type, 400, "datatype BYTES where a numeric datatype"),
        (infer, wrong_shape, 400, "every input needs the same N"),
        (infer, "{\"inputs\": [".to_string(), 400, "not an inference request"),
        (infer, huge, 413, "request body"),
        ("/v2/models/other/infer", good.clone(), 404, "model \"other\" is not served here"),
        ("/v2/models/wine-quality/versions/nope/infer", good.clone(), 404, "version \"nope\""),
    ] {
        let (status, r) = post(&addr, path, &body);
        assert_eq!(status, code, "{path}: {r}");
        let message = r["error"].as_str().unwrap_or_else(|| panic!("no error message: {r}"));
        assert!(message.contains(says), "{path}: {message:?} lacks {says:?}");
    }
    let (status, r) = post(&addr, infer, &good);
    assert_eq!(status, 200, "after the bad requests: {r}");
    let first = r["model_version"].as_str().unwrap().to_string();

    // a retrain under request load: every request answered, by one version, the change once
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, addr, good) = (stop.clone(), addr.clone(), good.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (status, r) = post(&addr, infer, &good);
                assert_eq!(status, 200, "under load: {r}");
                seen.push(r["model_version"].as_str().unwrap().to_string());
            }
            seen
        })
    };
    sb.command(&["train", "--name", "wine-quality"]).assert_ok();
    wait_for("the server to answer with the new version", PATIENCE, || {
        let (_, r) = post(&addr, infer, &good);
        let v = r["model_version"].as_str().unwrap_or_default().to_string();
        if v != first {
            Ok(())
        } else {
            Err(format!("still {v}"))
        }
    });
    // a few more requests on the new model before the load stops
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let seen = load.join().unwrap();
    let changes = seen.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(seen.len() >= 10, "only {} requests under load", seen.len());
    assert_eq!(seen[0], first);
    assert_ne!(seen.last().unwrap(), &first, "the load never saw the new version");
    assert_eq!(changes, 1, "the version changed {changes} times: {seen:?}");
    // /metrics counts the answers per endpoint and code
    let (_, text) = http_get(&addr, "/metrics").unwrap();
    assert!(text.contains("modelcast_http_requests_total{code=\"400\",endpoint=\"infer\"} 4"), "{text}");
    // SIGTERM: a clean stop
    sigterm(&server.child);
    let status = wait_for("predict --http to stop", PATIENCE, || {
        server.child.try_wait().unwrap().ok_or_else(|| "running".to_string())
    });
    assert!(status.success(), "{status}");
}

/// The protocol's own clients, tritonclient (HTTP and gRPC) and kserve (InferenceRESTClient v2,
/// InferenceGRPCClient), against `predict --http --grpc`: server and model
/// metadata, readiness, and infer with one tensor per column (binary tensor data, its default,
/// and JSON) and with one matrix (FP32 binary, FP64 JSON), for a linear model and a tree model:
/// every prediction equals `modelcast predict` on the same rows (FP64 exactly, FP32 within
/// float32), and a refused request reaches the client with the server's message.
#[test]
fn the_protocols_own_clients_get_what_predict_gives() {
    let Some(python) = crate::util::checkers_python("tritonclient") else { return };
    let sb = Sandbox::new();
    let (csv, names, rows) = wine_rows(25);
    let input = sb.write("rows.csv", &csv);
    let spec = sb.write("rows.json", &json!({"columns": names[..11], "rows": rows}).to_string());
    let shipped = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    let boosting = shipped
        .replace("  kind: ridge ", "  kind: gradient_boosting\n  max_iter: 30\n#")
        .replace("  alpha: 1.0 ", "  # alpha: 1.0 ");
    sb.write("params/boosting.yaml", &boosting);
    for (params, name) in [("params/params.yaml", "wine-quality"), ("params/boosting.yaml", "wine-boosting")] {
        sb.command(&["train", "--params", params, "--name", name]).assert_ok();
        let run = sb.command(&["predict", "--input", input.to_str().unwrap(), "--model-name", name]).assert_ok();
        let want: Vec<f64> = run.stdout_json().iter().map(|p| p["prediction"].as_f64().unwrap()).collect();
        let grpc = free_addr();
        let server = start(&sb, &["--model-name", name, "--grpc", &grpc]);
        let out = std::process::Command::new(&python)
            .arg(crate::util::repo().join("scripts/oip_client_check.py"))
            .args([&server.addr, name, spec.to_str().unwrap(), &grpc])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: oip_client_check.py failed:\n{stderr}");
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (got["live"].as_bool(), got["ready"].as_bool(), got["model_ready"].as_bool()),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!(got["server"]["name"], "modelcast");
        assert_eq!(got["model"]["name"], name);
        assert_eq!(got["model"]["inputs"].as_array().unwrap().len(), 11);
        let exact = |key: &str| -> Vec<f64> { serde_json::from_value(got[key]["prediction"].clone()).unwrap() };
        assert_eq!(exact("named_binary"), want, "{name}: named tensors, binary");
        assert_eq!(exact("named_json"), want, "{name}: named tensors, JSON");
        assert_eq!(got["named_binary"]["id"], "named");
        let m64: Vec<f64> = serde_json::from_value(got["matrix_fp64"].clone()).unwrap();
        assert_eq!(m64, want, "{name}: FP64 matrix");
        let m32: Vec<f64> = serde_json::from_value(got["matrix_fp32"].clone()).unwrap();
        for (a, b) in m32.iter().zip(&want) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{name}: FP32 matrix {a} vs {b}");
        }
        let refused = got["refused"].as_str().unwrap_or_default();
        assert!(refused.contains("400") && refused.contains("\"no-such-column\" is not an input"), "{refused}");
        // the same over gRPC (raw tensor contents, tritonclient.grpc's default)
        let g = &got["grpc"];
        assert_eq!(
            (g["live"].as_bool(), g["ready"].as_bool(), g["model_ready"].as_bool()),
            (Some(true), Some(true), Some(true))
        );
        assert_eq!((g["server"]["name"].as_str(), g["model"]["name"].as_str()), (Some("modelcast"), Some(name)));
        // (protobuf's JSON writes int64 shapes as strings: compare names and datatypes)
        let tensors = |m: &Value| -> Vec<(String, String)> {
            m["inputs"].as_array().unwrap().iter().map(|t| (t["name"].to_string(), t["datatype"].to_string())).collect()
        };
        assert_eq!(tensors(&g["model"]), tensors(&got["model"]), "the same inputs over both");
        let named: Vec<f64> = serde_json::from_value(g["named"]["prediction"].clone()).unwrap();
        assert_eq!(named, want, "{name}: gRPC named tensors");
        assert_eq!(
            (g["named"]["id"].as_str(), g["named"]["version"].as_str()),
            (Some("named"), got["named_binary"]["version"].as_str())
        );
        let m32: Vec<f64> = serde_json::from_value(g["matrix_fp32"].clone()).unwrap();
        let http32: Vec<f64> = serde_json::from_value(got["matrix_fp32"].clone()).unwrap();
        assert_eq!(m32, http32, "{name}: the FP32 matrix over gRPC and HTTP");
        let refused = g["refused"].as_str().unwrap_or_default();
        assert!(
            refused.contains("INVALID_ARGUMENT") && refused.contains("\"no-such-column\" is not an input"),
            "{refused}"
        );
        // kserve's clients, in a process of their own (they register the same protobuf names)
        let out = std::process::Command::new(&python)
            .arg(crate::util::repo().join("scripts/oip_kserve_check.py"))
            .args([&server.addr, &grpc, name, spec.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: oip_kserve_check.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let k: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (k["rest_ready"].as_bool(), k["rest_model_ready"].as_bool(), k["grpc_ready"].as_bool()),
            (Some(true), Some(true), Some(true))
        );
        for via in ["rest", "grpc"] {
            let p: Vec<f64> = serde_json::from_value(k[via]["prediction"].clone()).unwrap();
            assert_eq!(p, want, "{name}: kserve {via}");
            assert_eq!(k[via]["id"], "kserve", "{name}: kserve {via}");
        }
        assert_eq!(k["grpc"]["version"], got["named_binary"]["version"]);
    }
}

/// `--api-token-file`: over HTTP a request without the token, or with another, gets 401 and
/// the health endpoints stay open; over gRPC (tritonclient.grpc) a call without it gets
/// UNAUTHENTICATED; with it both answer. A token file that is empty is named at start-up.
#[test]
fn the_bearer_token_is_required_over_http_and_grpc() {
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let token = sb.write("token", "tok-123\n");
    let empty = sb.write("empty", "\n");
    let run = sb
        .command(&["predict", "--http", &free_addr(), "--api-token-file", empty.to_str().unwrap()])
        .assert_exit_code(2);
    assert!(run.stderr().contains("--api-token-file"), "{}", run.stderr());
    let grpc = free_addr();
    let server = start(&sb, &["--grpc", &grpc, "--api-token-file", token.to_str().unwrap()]);
    let (_, names, rows) = wine_rows(2);
    let body = named_request(&names, &rows, "FP64");
    let infer = "/v2/models/wine-quality/infer";
    for t in [None, Some("tok-12"), Some("tok-1234")] {
        let (status, r) = post_as(&server.addr, infer, &body, t);
        assert_eq!(status, 401, "{t:?}: {r}");
        assert!(r["error"].as_str().unwrap().contains("bearer token"), "{r}");
    }
    let (status, r) = post_as(&server.addr, infer, &body, Some("tok-123"));
    assert_eq!(status, 200, "{r}");
    assert_eq!(http_get(&server.addr, "/v2/health/ready").map(|r| r.0), Some(200));
    assert_eq!(http_get(&server.addr, "/v2").map(|r| r.0), Some(401));
    let Some(python) = crate::util::checkers_python("bearer token over gRPC") else { return };
    let script = r#"
import sys, numpy as np, tritonclient.grpc as g
c = g.InferenceServerClient(url=sys.argv[1])
x = g.InferInput("m", [1, 11], "FP64"); x.set_data_from_numpy(np.ones((1, 11)))
try:
    c.infer("wine-quality", [x]); print("no-token: answered")
except Exception as e:
    print("no-token:", e)
r = c.infer("wine-quality", [x], headers={"authorization": "Bearer tok-123"})
print("token:", r.as_numpy("prediction").tolist())
"#;
    let out = std::process::Command::new(python).args(["-c", script, &grpc]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("no-token: [StatusCode.UNAUTHENTICATED]") && text.contains("bearer token"), "{text}");
    // the same row over HTTP: the same number (both print the shortest round-trip form)
    let ones = json!({"inputs": [{"name": "m", "datatype": "FP64", "shape": [1, 11], "data": vec![1.0; 11]}]});
    let (_, r) = post_as(&server.addr, infer, &ones.to_string(), Some("tok-123"));
    let p = r["outputs"][0]["data"][0].as_f64().unwrap();
    assert!(text.contains(&format!("token: [{p}]")), "{text} (HTTP: {p})");
}

/// `--tls-cert`/`--tls-key`: HTTPS and gRPC over TLS answer a client that trusts the CA (the
/// same prediction over both), a client with another CA fails with a certificate error, and a
/// key that does not go with the certificate is named at start-up.
#[test]
fn tls_serves_https_and_grpc_and_a_wrong_ca_fails_clearly() {
    let Some(python) = crate::util::checkers_python("TLS") else { return };
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let dir = sb.path();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=modelcast test {ca}"));
        openssl(&[&["req", "-x509"][..], &ec, &["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]].concat());
    }
    openssl(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat());
    sb.write("san.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    // a key of another certificate is named before anything listens
    let run = sb
        .command(&["predict", "--http", &free_addr(), "--tls-cert", "server.pem", "--tls-key", "ca.key"])
        .assert_exit_code(2);
    assert!(run.stderr().contains("--tls-key"), "{}", run.stderr());
    let (http, grpc) = (free_addr(), free_addr());
    let mut cmd = sb.command(&[
        "predict",
        "--http",
        &http,
        "--grpc",
        &grpc,
        "--tls-cert",
        "server.pem",
        "--tls-key",
        "server.key",
    ]);
    cmd.cmd().stdout(Stdio::null()).stderr(Stdio::null());
    let server = Server { child: cmd.spawn(), addr: http.clone() };
    let script = r#"
import sys, ssl, time, urllib.request, numpy as np, tritonclient.grpc as g
http, grpc, ca, other = sys.argv[1:5]
def get(path, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(f"https://{http}{path}", context=ctx, timeout=10) as r:
            return f"{r.status} {r.read().decode()}"
    except Exception as e:
        return f"error: {e}"
deadline = time.time() + 120
while not get("/v2/health/ready", ca).startswith("200") and time.time() < deadline:
    time.sleep(0.2)
print("https ready:", get("/v2/health/ready", ca))
print("https other ca:", get("/v2/health/ready", other))
req = '{"inputs": [{"name": "m", "datatype": "FP64", "shape": [1, 11], "data": [1,1,1,1,1,1,1,1,1,1,1]}]}'
ctx = ssl.create_default_context(cafile=ca)
r = urllib.request.urlopen(urllib.request.Request(f"https://{http}/v2/models/wine-quality/infer", data=req.encode(),
    headers={"content-type": "application/json"}), context=ctx, timeout=10)
print("https infer:", r.read().decode())
x = g.InferInput("m", [1, 11], "FP64"); x.set_data_from_numpy(np.ones((1, 11)))
c = g.InferenceServerClient(url=grpc, ssl=True, root_certificates=ca)
print("grpc infer:", c.infer("wine-quality", [x]).as_numpy("prediction").tolist())
try:
    g.InferenceServerClient(url=grpc, ssl=True, root_certificates=other).infer("wine-quality", [x], client_timeout=10)
    print("grpc other ca: answered")
except Exception as e:
    print("grpc other ca:", e)
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, &http, &grpc])
        .arg(dir.join("ca.pem"))
        .arg(dir.join("other-ca.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("https ready: 200"), "{text}");
    assert!(text.contains("https other ca: error:") && text.contains("CERTIFICATE_VERIFY_FAILED"), "{text}");
    let line = |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_default().to_string();
    let https: Value = serde_json::from_str(&line("https infer: ")).unwrap_or_else(|e| panic!("{e}: {text}"));
    let p = https["outputs"][0]["data"][0].as_f64().unwrap();
    assert_eq!(line("grpc infer: "), format!("[{p}]"), "the same prediction over gRPC and HTTPS: {text}");
    let other = line("grpc other ca: ");
    assert!(other.contains("UNAVAILABLE") && !other.contains("answered"), "{text}");
    drop(server);
}

/// SIGTERM while a request is half sent: the server stops accepting, but the request in flight
/// is read to its end and answered (200, a prediction), and then the process exits 0.
#[test]
fn a_request_in_flight_at_sigterm_is_answered() {
    use std::io::{Read, Write};
    let sb = Sandbox::new();
    sb.command(&["train"]).assert_ok();
    let mut server = start(&sb, &[]);
    let (_, names, rows) = wine_rows(3);
    let body = named_request(&names, &rows, "FP64");
    let mut conn = std::net::TcpStream::connect(&server.addr).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "POST /v2/models/wine-quality/infer HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(first).unwrap();
    conn.flush().unwrap();
    // the server has the request's head: stop it, then send the rest a moment later
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&server.child);
    std::thread::sleep(Duration::from_millis(500));
    let refused = std::net::TcpStream::connect(&server.addr).is_err();
    conn.write_all(rest).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"prediction\""), "{answer}");
    assert!(refused, "a new connection was accepted after SIGTERM");
    let status = wait_for("predict --http to stop", PATIENCE, || {
        server.child.try_wait().unwrap().ok_or_else(|| "running".to_string())
    });
    assert!(status.success(), "{status}");
}

/// `--shadow` over requests and adaptive batching: 16 clients at once, each answered by the
/// champion with exactly `predict`'s number for its row and nothing of the challenger; the
/// requests share batches (a 20 ms wait); the challenger's prediction of each row is recorded on
/// the shadow topic (here the local log), keyed by the request id, naming the request.
#[test]
fn requests_are_batched_and_the_shadow_is_recorded_never_returned() {
    let sb = Sandbox::new();
    let (csv, names, rows) = wine_rows(16);
    let input = sb.write("rows.csv", &csv);
    let shipped = std::fs::read_to_string(sb.path().join("params/params.yaml")).unwrap();
    sb.write("params/worse.yaml", &shipped.replace("  alpha: 1.0 ", "  alpha: 300.0 "));
    sb.command(&["train", "--promote", "champion"]).assert_ok();
    sb.command(&["train", "--params", "params/worse.yaml", "--promote", "challenger"]).assert_ok();
    let want = sb
        .command(&["predict", "--input", input.to_str().unwrap(), "--alias", "champion", "--shadow", "challenger"])
        .assert_ok()
        .stdout_json();
    let (champion, challenger) = (want[0]["model_version"].clone(), want[0]["shadow_version"].clone());
    assert_ne!(champion, challenger);
    let server = start(&sb, &["--alias", "champion", "--shadow", "challenger", "--batch-wait-us", "20000"]);
    let barrier = Arc::new(std::sync::Barrier::new(rows.len()));
    let clients: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let (addr, barrier) = (server.addr.clone(), barrier.clone());
            let body = named_request(&names, std::slice::from_ref(row), "FP64")
                .replace("\"named\"", &format!("\"order-{i}\""));
            std::thread::spawn(move || {
                barrier.wait();
                post(&addr, "/v2/models/wine-quality/infer", &body)
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let (status, r) = c.join().unwrap();
        assert_eq!(status, 200, "{r}");
        assert_eq!((&r["model_version"], r["id"].as_str()), (&champion, Some(format!("order-{i}").as_str())));
        assert_eq!(r["outputs"].as_array().unwrap().len(), 1, "only the champion's prediction: {r}");
        assert_eq!(r["outputs"][0]["data"][0], want[i]["prediction"], "row {i}");
    }
    let (_, text) = http_get(&server.addr, "/metrics").unwrap();
    let metric = |name: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(metric("modelcast_http_batch_requests_sum"), 16.0);
    let batches = metric("modelcast_http_batch_requests_count");
    assert!(batches < 16.0, "16 requests sent at once were scored in {batches} batches");
    // the shadow's predictions reach the log after the answers: wait for all 16
    let log = sb.path().join("models/_bus/app_messages_shadow.jsonl");
    let recorded: Vec<Value> = wait_for("16 shadow predictions", PATIENCE, || {
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 16 {
            Ok(lines)
        } else {
            Err(format!("{} so far", lines.len()))
        }
    });
    assert_eq!(recorded.len(), 16);
    for p in &recorded {
        let key = p["key"].as_str().unwrap();
        let i: usize = key.strip_prefix("order-").unwrap().parse().unwrap();
        assert_eq!(
            (&p["model_version"], &p["api"], &p["request_id"], &p["row"]),
            (&challenger, &json!("http"), &json!(key), &json!(0))
        );
        assert_eq!(p["prediction"], want[i]["shadow_prediction"], "row {i}");
    }
}

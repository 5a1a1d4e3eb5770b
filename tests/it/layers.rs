//! The layering of docs/ARCHITECTURE.md, enforced: every `crate::` path in `src/` (outside
//! `#[cfg(test)]` modules) must point at the same layer or one below the file's own, no command
//! imports another command, and only the Kafka edge (plus the documented exceptions) names the
//! Kafka client module. A failure names the file, the line and the rule.

use std::path::{Path, PathBuf};

/// The layers, bottom first: a module may use its own layer and every layer below it. `error`
/// and `events` (rank 0) may be used from anywhere. Within one layer, the order of the modules
/// is the order of the list too (a module may use the modules listed before it), so no two
/// modules of the crate import each other.
const LAYERS: &[&str] = &[
    "error events",
    "util",
    "params",
    "data",
    "design",
    "trees",
    "model",
    "features",
    "record",
    "drift",
    "stats",
    "live",
    "artifact",
    "report",
    "export",
    "train",
    "messages",
    "lifecycle",
    "config",
    "store",
    "bus",
    "aliases",
    "predict",
    "versions",
    "evaluate",
    "cli",
    "settings",
    "cmd",
    "lib main",
];

/// Files outside `src/bus/` that may name `crate::bus::kafka`, and why (docs/ARCHITECTURE.md).
const KAFKA_CLIENT_USERS: &[(&str, &str)] = &[
    ("predict/serve.rs", "the service loop holds the input consumer and sends batches on the producer"),
    ("predict/http.rs", "/healthz and the lag gauge read the input consumer's assignment"),
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.split(' ').any(|m| m == module))
}

/// The top-level module a source file belongs to (`src/bus/kafka/reader.rs` → `bus`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `crate::a::b` paths of one file's non-test code: (line number, `a`, `b`).
fn crate_paths(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // unit tests may reach any layer: they test, they do not ship
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `modelcast_crate::`, not ours
            }
            let seg = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
            let first = seg(rest);
            let second = rest[first.len()..].strip_prefix("::").map(seg).unwrap_or_default();
            out.push((i + 1, first, second));
        }
    }
    out
}

/// Every violation in the tree under `src`, one line each.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let commands: Vec<String> = std::fs::read_dir(src.join("cmd"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "mod")
        .collect();
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap().to_path_buf();
        let shown = format!("src/{}", rel.display());
        if rel == Path::new("fuzz.rs") {
            continue; // compiled only for tests
        }
        let me = module_of(&rel);
        let Some(my_rank) = rank(&me) else {
            bad.push(format!("{shown}: module `{me}` is in no layer of tests/it/layers.rs (add it to the table)"));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, first, second) in crate_paths(&text) {
            let Some(their_rank) = rank(&first) else {
                bad.push(format!("{shown}:{line}: `crate::{first}` is in no layer"));
                continue;
            };
            if their_rank > my_rank {
                bad.push(format!(
                    "{shown}:{line}: `{me}` (layer {my_rank}) imports `crate::{first}` (layer {their_rank}), which is above it"
                ));
            }
            if me == "cmd" && first == "cmd" && commands.contains(&second) {
                let own = rel.file_stem().unwrap().to_string_lossy();
                if second != own {
                    bad.push(format!("{shown}:{line}: command `{own}` imports command `{second}`"));
                }
            }
            if first == "bus" && second == "kafka" && me != "bus" {
                let rel_s = rel.to_string_lossy().replace('\\', "/");
                if !KAFKA_CLIENT_USERS.iter().any(|(f, _)| *f == rel_s) {
                    bad.push(format!("{shown}:{line}: names the Kafka client (`crate::bus::kafka`); go through `Bus`"));
                }
            }
        }
    }
    bad
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_run_one_way() {
    let bad = violations(&src_dir());
    assert!(bad.is_empty(), "imports against the layer table:\n{}", bad.join("\n"));
}

/// The guard itself: a copy of `src/` with one forbidden import added fails, naming it.
#[test]
fn a_forbidden_import_is_caught_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&src_dir(), tmp.path());
    // The layer numbers come from the table, so adding a module to it does not break the guard.
    let layer = |m: &str| rank(m).unwrap();
    let cases = [
        (
            "util/hash.rs",
            "use crate::model::Fit;\n",
            format!("`util` (layer {}) imports `crate::model`", layer("util")),
        ),
        (
            "lifecycle.rs",
            "use crate::bus::Bus;\n",
            format!("`lifecycle` (layer {}) imports `crate::bus`", layer("lifecycle")),
        ),
        ("cmd/train.rs", "use crate::cmd::promote::run;\n", "command `train` imports command `promote`".to_string()),
        ("evaluate.rs", "use crate::bus::kafka::Kafka;\n", "names the Kafka client".to_string()),
    ];
    for (file, line, expect) in cases {
        let path = tmp.path().join(file);
        let before = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{line}{before}")).unwrap();
        let bad = violations(tmp.path());
        assert!(bad.iter().any(|b| b.contains(&expect) && b.contains(&format!("src/{file}:1:"))), "{file}: {bad:#?}");
        std::fs::write(&path, before).unwrap();
    }
    assert!(violations(tmp.path()).is_empty());
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

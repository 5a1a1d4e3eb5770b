//! `modelcast check`: the preflight an operator runs first (as they reach for `kcat -L` or
//! `aws s3 ls`): brokers reachable and accepting our credentials, every topic there, the store
//! reachable and writable, a model to serve. A checklist on stdout; exit 0 only if all pass.

use std::io::Write;

use crate::cmd::Outcome;
use crate::error::{Error, Result};
use crate::settings::Locations;
use crate::store::Store;

/// One line of the checklist.
struct Item {
    ok: bool,
    what: String,
    detail: String,
}

/// Run every check and print the checklist; [`Error::Checks`] (exit 1) when one failed.
pub async fn run(loc: Locations) -> Result<Outcome> {
    let mut items = Vec::new();
    let mut push = |ok: bool, what: &str, detail: String| items.push(Item { ok, what: what.to_string(), detail });
    if let Some(cfg) = loc.kafka.clone() {
        let props = &cfg.properties;
        let who = match (props.get("security.protocol"), props.get("sasl.mechanisms").or(props.get("sasl.mechanism"))) {
            (Some(p), Some(m)) => {
                format!("{p}, {m} as {}", props.get("sasl.username").map_or("(no sasl.username)", String::as_str))
            }
            (Some(p), None) => p.clone(),
            _ => "PLAINTEXT".to_string(),
        };
        let servers = props.get("bootstrap.servers").cloned().unwrap_or_default();
        let topics = cfg.modelcast.topics.clone();
        match crate::bus::Bus::kafka(cfg) {
            Err(e) => push(false, "brokers", e.to_string()),
            Ok(k) => match k.check_topics(&[]).await {
                Err(e) => push(false, "brokers", e.to_string()),
                Ok(_) => {
                    push(true, "brokers", format!("{servers} ({who})"));
                    let names = [
                        ("train", &topics.train),
                        ("input", &topics.input),
                        ("app_messages", &topics.app_messages),
                        ("dead_letter", &topics.dead_letter),
                        ("shadow", &topics.shadow),
                    ];
                    for (role, name) in names {
                        match k.check_topics(&[name]).await {
                            Ok(found) => {
                                let n = found.first().map_or(0, |f| f.1);
                                push(true, &format!("topic {role}"), format!("{name} ({n} partitions)"))
                            }
                            Err(e) => push(false, &format!("topic {role}"), e.to_string()),
                        }
                    }
                }
            },
        }
    } else {
        push(true, "bus", "local logs in the store (no --kafka-config)".into());
    }
    match Store::open(&loc.store, &loc.store_options).await {
        Err(e) => push(false, "store", e.to_string()),
        Ok(store) => {
            push(true, "store", format!("{} reachable", store.uri()));
            match store.check_writable().await {
                Ok(()) => push(true, "store writes", "a probe object was written and removed".into()),
                Err(e) => push(false, "store writes", e.to_string()),
            }
            match store.list("").await {
                Ok(keys) => match keys.iter().filter(|k| k.ends_with(".json")).max_by_key(|k| k.rsplit('/').next()) {
                    Some(k) => push(true, "model", format!("newest: {}", store.uri_of(k))),
                    None => push(false, "model", "no model in the store yet: run `modelcast train`".into()),
                },
                Err(e) => push(false, "model", e.to_string()),
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let failed = items.iter().filter(|i| !i.ok).count();
    for i in &items {
        let _ = writeln!(out, "{:<4} {:<18} {}", if i.ok { "ok" } else { "FAIL" }, i.what, i.detail);
    }
    let _ = writeln!(out, "{} of {} checks passed", items.len() - failed, items.len());
    if failed > 0 {
        return Err(Error::Checks(failed));
    }
    Ok(Outcome::Done)
}

//! Confluent Cloud's shape on the test bed: SASL_SSL on Apache Kafka's own TLS listener, with
//! PLAIN (Confluent Cloud's API keys), SCRAM-SHA-512 and SCRAM-SHA-256, end to end, and the usual
//! mistakes (wrong secret, wrong CA, wrong host, missing topic) each named within seconds, with
//! nothing stored, nothing announced and no secret shown.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::util::bed::{bed, Replica, SaslBed};
use crate::util::fixtures::wine_records;
use crate::util::kafka::{produce, producer, read_all, read_topic, wait_count};
use crate::util::*;

/// The SASL_SSL broker, or `None` (the test is skipped) when the test bed has none; with
/// `MODELCAST_REQUIRE_SERVICES=1` a missing one is a failure.
fn sasl() -> Option<SaslBed> {
    let bed = bed()?;
    match bed.sasl {
        Some(s) => Some(s),
        None if std::env::var("MODELCAST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("the test bed has no SASL_SSL broker: scripts/services.sh needs socat (apt-get install socat)")
        }
        None => None,
    }
}

#[test]
fn sasl_ssl_end_to_end_with_plain_and_scram() {
    let Some(s) = sasl() else { return };
    for mechanism in ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256"] {
        let sb = Sandbox::new();
        let id = unique(&mechanism.to_ascii_lowercase());
        sb.write("kafka.yaml", &s.kafka_yaml(mechanism, &id));
        let cmd = |args: &[&str]| {
            let mut c = sb.command(args);
            c.env("SASL_PASSWORD", &s.password);
            c
        };
        cmd(&["topics", "create", "--kafka-config", "kafka.yaml"]).assert_ok();
        let train = cmd(&["train", "--kafka-config", "kafka.yaml", "--json"]).assert_ok();
        assert!(!train.stderr().contains(&s.password), "the secret was printed:\n{}", train.stderr());
        let v = train.stdout_doc()["version"].as_str().unwrap().to_string();
        // the preflight passes: brokers, credentials, five topics, the store, a model
        let check = cmd(&["check", "--kafka-config", "kafka.yaml"]).assert_ok().stdout();
        assert_eq!(check.lines().filter(|l| l.starts_with("ok ")).count(), 9, "{check}");
        assert!(check.contains(&format!("{mechanism} as {}", s.user)) && !check.contains(&s.password), "{check}");
        // an independent client reads the announcement over SASL_SSL
        let conn = s.conn(mechanism);
        let anns = read_topic(&conn, &format!("{id}-train"), 1, PATIENCE);
        assert_eq!(anns[0].json()["version"], v.as_str());
        // the service consumes and produces over SASL_SSL
        let mut svc = Replica::start(cmd(&["predict", "--serve", "--kafka-config", "kafka.yaml"]));
        svc.wait_ready(PATIENCE);
        produce(&producer(&conn), &format!("{id}-in"), &wine_records(500));
        wait_count(&conn, &format!("{id}-app"), 500, PATIENCE);
        let (status, log) = svc.stop();
        assert!(status.success(), "{log}");
        // what the service wrote in the end (it flushes on stop)
        let preds = read_all(&conn, &format!("{id}-app"));
        assert_eq!(preds.len(), 500, "{mechanism}: one prediction per input");
        assert!(!log.contains(&s.password), "the secret was printed:\n{log}");
        let keys: BTreeSet<String> = preds
            .iter()
            .map(|r| {
                let p = r.json();
                assert_eq!(p["model_version"], v.as_str());
                p["key"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(keys.len(), 500, "{mechanism}: every record scored once");
        // evaluate reads the predictions (and the empty labels topic) over SASL_SSL
        let eval = cmd(&["evaluate", "--kafka-config", "kafka.yaml"]).assert_ok();
        assert!(!eval.stderr().contains(&s.password), "the secret was printed:\n{}", eval.stderr());
        assert_eq!(eval.stdout_doc()["type"], "model_metrics", "{}", eval.stdout());
    }
}

/// A change to a kafka_config.yaml.
type Edit<'a> = Box<dyn Fn(String) -> String + 'a>;

#[test]
fn the_usual_mistakes_are_named_within_seconds_with_nothing_stored() {
    let Some(s) = sasl() else { return };
    let wrong_secret = "wrong-secret-4f1c9";
    // port 1 (tcpmux): nothing listens there, and no test binds it (a port that was free a moment
    // ago may meanwhile be a replica's metrics port while the suite runs in parallel)
    let free = "127.0.0.1:1".to_string();
    // (what, config edit, password, what the message must name)
    let cases: [(&str, Edit, &str, &str); 4] = [
        ("wrong secret", Box::new(|y| y), wrong_secret, "sasl.username"),
        (
            "wrong CA",
            Box::new(|y: String| y.replace(&s.ca, "/etc/ssl/certs/ca-certificates.crt")),
            &s.password,
            "ssl.ca.location",
        ),
        ("wrong host", Box::new(|y: String| y.replace(&s.bootstrap, &free)), &s.password, "bootstrap.servers"),
        ("missing topic", Box::new(|y| y), &s.password, "modelcast topics create"),
    ];
    // PLAIN is how Confluent Cloud's API keys authenticate; SCRAM is the other mechanism users meet
    for (mechanism, (what, edit, password, names)) in
        ["PLAIN", "SCRAM-SHA-512"].into_iter().flat_map(|m| cases.iter().map(move |c| (m, c)))
    {
        let (what, password, names) = (*what, *password, *names);
        let sb = Sandbox::new();
        let id = unique("mistake");
        sb.write("kafka.yaml", &edit(s.kafka_yaml(mechanism, &id)));
        let t = Instant::now();
        let out =
            sb.command(&["train", "--kafka-config", "kafka.yaml"]).env("SASL_PASSWORD", password).assert_exit_code(1);
        let took = t.elapsed();
        let e = out.stderr();
        assert!(e.contains(names), "{what}: the message should name {names}:\n{e}");
        assert!(took < Duration::from_secs(10), "{what}: took {took:?} (timeout_ms is at its default)");
        assert!(!e.contains(wrong_secret) && !e.contains(&s.password), "{what}: a secret was printed:\n{e}");
        assert!(sb.artifacts("wine-quality").is_empty(), "{what}: nothing may be stored");
        // the preflight names the broken item
        let check = sb
            .command(&["check", "--kafka-config", "kafka.yaml"])
            .env("SASL_PASSWORD", password)
            .assert_exit_code(1)
            .stdout();
        let broken = if what == "missing topic" { "FAIL topic train" } else { "FAIL brokers" };
        assert!(check.contains(broken) && check.contains(names), "{what}:\n{check}");
        assert!(!check.contains(wrong_secret) && !check.contains(&s.password), "{check}");
        if what == "wrong secret" {
            // topics create says the same, instead of an admin timeout
            let t = Instant::now();
            let e = sb
                .command(&["topics", "create", "--kafka-config", "kafka.yaml"])
                .env("SASL_PASSWORD", password)
                .assert_exit_code(1)
                .stderr();
            assert!(e.contains("authentication failed") && t.elapsed() < Duration::from_secs(10), "{e}");
        }
    }
}

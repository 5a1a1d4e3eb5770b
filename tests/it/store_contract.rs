//! The ModelStore contract, one generic body run against every backend: the file store, and
//! garage and s3s-fs from the loopback test bed (`scripts/services.sh run`).

use modelcast::error::Error;
use modelcast::store::s3::Atomicity;
use modelcast::store::Store;

use crate::util::bed::bed;
use crate::util::unique;

/// The contract every store keeps; `atomicity` is what the store must say of its create-if-absent.
pub async fn contract(store: &Store, prefix: &str, atomicity: Atomicity) {
    let k1 = format!("{prefix}/m/2026-01-01/a.json");
    let k2 = format!("{prefix}/m/2026-01-02/b.json");
    assert!(matches!(store.get(&k1).await, Err(Error::NotFound(_))), "absent key is NotFound");
    store.put_if_absent(&k1, b"one").await.unwrap();
    store.put_if_absent(&k2, b"two").await.unwrap();
    assert_eq!(store.get(&k1).await.unwrap(), b"one");
    // never overwrites
    let again = store.put_if_absent(&k1, b"other").await;
    assert!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");
    assert_eq!(store.get(&k1).await.unwrap(), b"one");
    // sorted listing under a prefix; newest
    let keys = store.list(&format!("{prefix}/m/")).await.unwrap();
    assert_eq!(keys, vec![k1.clone(), k2.clone()]);
    assert_eq!(store.latest(&format!("{prefix}/m")).await.unwrap(), Some(k2.clone()));
    assert_eq!(store.latest(&format!("{prefix}/none")).await.unwrap(), None);
    // verified get
    let sha = modelcast::util::hash::sha256_hex(b"two");
    assert_eq!(store.get_verified(&k2, &sha).await.unwrap(), b"two");
    let bad = store.get_verified(&k2, &"0".repeat(64)).await.unwrap_err().to_string();
    assert!(bad.contains("sha256 mismatch"), "{bad}");
    // unsafe keys refused
    assert!(store.put_if_absent("../escape.json", b"x").await.is_err());
    // internal keys (the alias log) are not artifacts: list leaves them out, list_internal not
    let internal = format!("{prefix}/m/_aliases/1.json");
    store.put_if_absent(&internal, b"{}").await.unwrap();
    assert_eq!(store.list(&format!("{prefix}/m/")).await.unwrap(), vec![k1.clone(), k2.clone()]);
    assert!(store.list_internal(&format!("{prefix}/m/")).await.unwrap().contains(&internal));
    // what the store says of its create-if-absent; where it says atomic, of eight concurrent
    // writers exactly one wins
    assert_eq!(store.atomic_put_if_absent(&format!("{prefix}/_probe")).await.unwrap(), atomicity);
    if atomicity == Atomicity::Atomic {
        let race = format!("{prefix}/race.json");
        let writes = (0..8u8).map(|i| {
            let race = race.clone();
            async move { store.put_if_absent(&race, &[i]).await }
        });
        let results = crate::util::join_all(writes).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{results:?}");
        assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(Error::AlreadyExists { .. }))), "{results:?}");
    }
}

#[tokio::test]
async fn file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("file://{}", dir.path().display()), &Default::default()).await.unwrap();
    contract(&store, "p", Atomicity::Atomic).await;
    // no temp files left behind
    let leftovers: Vec<_> = walk(dir.path()).into_iter().filter(|p| p.contains("/.tmp-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn garage_keeps_the_contract() {
    let Some(bed) = bed() else { return };
    let store = bed.garage.open(&format!("s3://{}/contract", bed.garage.bucket)).await;
    // garage 2.5 accepts a second conditional put of an existing key
    contract(&store, &unique("garage"), Atomicity::Ignored).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3s_fs_keeps_the_contract() {
    let Some(bed) = bed() else { return };
    let Some(s3s) = bed.s3s_fs() else { return };
    // s3s-fs signs with its own keys
    let store = s3s.open(&format!("s3://{}/contract", s3s.bucket)).await;
    // s3s-fs refuses a second conditional put, but lets concurrent writers all win (measured);
    // no probe can tell that from atomic, so a custom endpoint is Unknown unless declared
    contract(&store, &unique("s3s"), Atomicity::Unknown).await;
}

fn walk(p: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e.display().to_string());
        }
    }
    out
}

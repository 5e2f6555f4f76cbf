//! Artifact storage against the real backends: a local directory and S3 (moto), with one
//! behaviour suite run on both.

use std::sync::Arc;
use test_looper_artifacts::{
    open_store, ArtifactError, ArtifactKey, ArtifactPrefix, ArtifactStore, Removed, StoreConfig,
};
use test_looper_tests::MotoServer;
use tokio::io::AsyncReadExt;

/// A file of `len` pseudo-random bytes.
fn random_file(dir: &std::path::Path, name: &str, len: usize) -> std::path::PathBuf {
    let mut state = 0x9e3779b97f4a7c15u64 ^ len as u64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn exercise(store: Arc<dyn ArtifactStore>) {
    let dir = tempfile::tempdir().unwrap();

    // A build artifact larger than one multipart part round-trips byte for byte.
    let big = random_file(dir.path(), "big.bin", 19 * 1024 * 1024 + 17);
    let key = ArtifactKey::build("0123abcd", "build_s_linux_s_libs.tar.gz").unwrap();
    assert!(!store.exists(&key).await.unwrap());
    let stored = store.put_file(&key, &big).await.unwrap();
    assert_eq!(stored, 19 * 1024 * 1024 + 17);
    assert_eq!(store.size(&key).await.unwrap(), Some(stored));
    let back = dir.path().join("back.bin");
    store.get_to_file(&key, &back).await.unwrap();
    assert!(std::fs::read(&big).unwrap() == std::fs::read(&back).unwrap());

    // Writing the same key again (a concurrent builder) succeeds and replaces it.
    let small = random_file(dir.path(), "small.bin", 1000);
    store.put_file(&key, &small).await.unwrap();
    assert_eq!(store.size(&key).await.unwrap(), Some(1000));

    // Run artifacts with nested names are listed relative to the run.
    let run = |name: &str| ArtifactKey::run("feedface", "run-1", name).unwrap();
    store
        .put_bytes(&run("test_result.json"), b"{\"success\":true}".to_vec())
        .await
        .unwrap();
    store
        .put_bytes(
            &run("individual_test_logs/case_s_a/log.txt"),
            b"log".to_vec(),
        )
        .await
        .unwrap();
    store
        .put_bytes(
            &ArtifactKey::run("feedface", "run-2", "other.txt").unwrap(),
            b"x".to_vec(),
        )
        .await
        .unwrap();
    let listed = store
        .list(&ArtifactPrefix::run("feedface", "run-1").unwrap())
        .await
        .unwrap();
    let names: Vec<(&str, u64)> = listed.iter().map(|o| (o.name.as_str(), o.size)).collect();
    assert_eq!(
        names,
        vec![
            ("individual_test_logs/case_s_a/log.txt", 3),
            ("test_result.json", 16)
        ]
    );
    let mut text = String::new();
    store
        .get_reader(&run("test_result.json"))
        .await
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    assert_eq!(text, "{\"success\":true}");
    assert_eq!(
        store
            .get_bytes(&run("individual_test_logs/case_s_a/log.txt"), 100)
            .await
            .unwrap(),
        b"log"
    );
    assert!(store.get_bytes(&run("test_result.json"), 4).await.is_err());

    // Missing objects are NotFound, and a failed download leaves no file behind.
    let missing = ArtifactKey::build("0123abcd", "nope.tar.gz").unwrap();
    let dest = dir.path().join("nope");
    match store.get_to_file(&missing, &dest).await {
        Err(ArtifactError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!dest.exists());
    assert!(store
        .list(&ArtifactPrefix::run("feedface", "missing").unwrap())
        .await
        .unwrap()
        .is_empty());
}

/// Retention's deletions: nothing recent goes, `keep` is honoured, other prefixes are never
/// touched, and a deleted key is gone.
async fn expire(store: Arc<dyn ArtifactStore>) {
    let put = |key: ArtifactKey, bytes: &'static [u8]| {
        let store = store.clone();
        async move { store.put_bytes(&key, bytes.to_vec()).await.unwrap() }
    };
    put(ArtifactKey::run("h1", "r1", "log.txt").unwrap(), b"one").await;
    put(ArtifactKey::run("h1", "r2", "out/x.bin").unwrap(), b"two!").await;
    put(ArtifactKey::run("h2", "r3", "log.txt").unwrap(), b"three").await;
    put(ArtifactKey::build("b1", "lib.tar.gz").unwrap(), b"b1").await;
    put(ArtifactKey::build("b2", "lib.tar.gz").unwrap(), b"b2b2").await;
    let record = ArtifactKey::scheduler("results/h1/r1.json").unwrap();
    put(record.clone(), b"{}").await;
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();

    let none = store
        .remove_older_than(&ArtifactPrefix::all_runs(), now - day, &|_: &str| false)
        .await
        .unwrap();
    assert_eq!(none, Removed::default(), "nothing is a day old");
    let removed = store
        .remove_older_than(&ArtifactPrefix::all_runs(), now + day, &|name: &str| {
            name.starts_with("h1/r2/")
        })
        .await
        .unwrap();
    assert_eq!(
        removed,
        Removed {
            objects: 2,
            bytes: 8
        }
    );
    let left = |test: &'static str, run: &'static str| {
        let store = store.clone();
        async move {
            store
                .list(&ArtifactPrefix::run(test, run).unwrap())
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        (
            left("h1", "r1").await,
            left("h1", "r2").await,
            left("h2", "r3").await
        ),
        (0, 1, 0)
    );
    let builds = store
        .remove_older_than(&ArtifactPrefix::all_builds(), now + day, &|name: &str| {
            name.starts_with("b1/")
        })
        .await
        .unwrap();
    assert_eq!(
        builds,
        Removed {
            objects: 1,
            bytes: 4
        }
    );
    assert!(store
        .exists(&ArtifactKey::build("b1", "lib.tar.gz").unwrap())
        .await
        .unwrap());
    // Scheduler documents are not under either prefix.
    assert!(store.exists(&record).await.unwrap());
    assert!(store.delete(&record).await.unwrap());
    assert!(!store.delete(&record).await.unwrap());
    assert!(!store.exists(&record).await.unwrap());
}

#[tokio::test]
async fn disk_store_expires_by_modification_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = open_store(&StoreConfig::LocalDisk { path: root.clone() })
        .await
        .unwrap();
    expire(store.clone()).await;
    // Only what was last written before the cutoff goes; emptied old directories go too.
    let old = ArtifactKey::run("h9", "old", "log.txt").unwrap();
    let new = ArtifactKey::run("h9", "new", "log.txt").unwrap();
    store.put_bytes(&old, b"old".to_vec()).await.unwrap();
    store.put_bytes(&new, b"new".to_vec()).await.unwrap();
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(90 * 86_400);
    let old_dir = root.join("runs/h9/old");
    std::fs::File::options()
        .write(true)
        .open(old_dir.join("log.txt"))
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    std::fs::File::open(&old_dir)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let cutoff = std::time::SystemTime::now() - std::time::Duration::from_secs(30 * 86_400);
    let removed = store
        .remove_older_than(&ArtifactPrefix::all_runs(), cutoff, &|_: &str| false)
        .await
        .unwrap();
    assert_eq!(
        removed,
        Removed {
            objects: 1,
            bytes: 3
        }
    );
    assert!(
        !old_dir.exists(),
        "the emptied old run directory is removed"
    );
    assert!(store.exists(&new).await.unwrap());
}

#[tokio::test]
async fn s3_store_expires_against_moto() {
    let moto = MotoServer::start();
    let settings = moto.aws_settings();
    let keys = settings.credentials.clone().unwrap();
    let config = StoreConfig::S3 {
        bucket: "looper-expiry".into(),
        region: settings.region.clone(),
        key_prefix: "install-b".into(),
        endpoint_url: settings.endpoint_url.clone(),
        credentials: Some((keys.access_key_id, keys.secret_access_key)),
    };
    expire(open_store(&config).await.unwrap()).await;
}

#[tokio::test]
async fn disk_store_streams_lists_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("artifacts");
    let store = open_store(&StoreConfig::LocalDisk { path: root.clone() })
        .await
        .unwrap();
    exercise(store).await;
    // The layout on disk is the documented one.
    assert!(root
        .join("builds/0123abcd/build_s_linux_s_libs.tar.gz")
        .is_file());
    assert!(root.join("runs/feedface/run-1/test_result.json").is_file());
    // No temporary files survive.
    let leftovers: Vec<_> = std::fs::read_dir(root.join("builds/0123abcd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[tokio::test]
async fn s3_store_streams_lists_and_overwrites_against_moto() {
    let moto = MotoServer::start();
    let settings = moto.aws_settings();
    let keys = settings.credentials.clone().unwrap();
    let config = StoreConfig::S3 {
        bucket: "looper-artifacts".into(),
        region: settings.region.clone(),
        key_prefix: "install-a".into(),
        endpoint_url: settings.endpoint_url.clone(),
        credentials: Some((keys.access_key_id, keys.secret_access_key)),
    };
    let store = open_store(&config).await.unwrap();
    exercise(store).await;

    // Same key layout as on disk, under the configured prefix.
    let sdk = test_looper_aws::sdk_config(&settings).await;
    let s3 = test_looper_aws::s3_client(&sdk, true);
    let head = s3
        .head_object()
        .bucket("looper-artifacts")
        .key("install-a/runs/feedface/run-1/test_result.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
}

//! Artifact storage against the real backends: a local directory and S3 (moto), with one
//! behaviour suite run on both.

use std::sync::Arc;
use test_looper_artifacts::{
    open_store, ArtifactError, ArtifactKey, ArtifactPrefix, ArtifactStore, StoreConfig,
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

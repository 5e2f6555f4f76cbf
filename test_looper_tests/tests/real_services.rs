//! The harness really starts and talks to each service: Redis, moto (S3 + EC2), Docker, git.

use futures_util::StreamExt;
use redis::AsyncCommands;
use test_looper_tests::{DockerEngine, MotoServer, RedisServer};

#[tokio::test]
async fn redis_round_trips_values_and_pubsub() {
    let server = RedisServer::start();
    let client = server.client();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = connection.set("greeting", "hello").await.unwrap();
    let value: String = connection.get("greeting").await.unwrap();
    assert_eq!(value, "hello");

    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("events").await.unwrap();
    let _: i64 = connection.publish("events", "run-finished").await.unwrap();
    let message = pubsub.on_message().next().await.unwrap();
    assert_eq!(message.get_payload::<String>().unwrap(), "run-finished");
}

#[tokio::test]
async fn each_redis_is_isolated_and_stops_on_drop() {
    let first = RedisServer::start();
    let second = RedisServer::start();
    assert_ne!(first.port(), second.port());
    let port = first.port();
    drop(first);
    assert!(
        !test_looper_tests::ports::is_listening(port),
        "redis still listening after drop"
    );
}

#[tokio::test]
async fn moto_serves_s3_objects() {
    let moto = MotoServer::start();
    let config = test_looper_aws::sdk_config(&moto.aws_settings()).await;
    let s3 = test_looper_aws::s3_client(&config, true);
    s3.create_bucket().bucket("artifacts").send().await.unwrap();
    s3.put_object()
        .bucket("artifacts")
        .key("builds/abc/build.tar.gz")
        .body(b"tarball bytes".to_vec().into())
        .send()
        .await
        .unwrap();
    let object = s3
        .get_object()
        .bucket("artifacts")
        .key("builds/abc/build.tar.gz")
        .send()
        .await
        .unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"tarball bytes");

    moto.reset().await.unwrap();
    let buckets = s3.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "reset wipes buckets");
}

#[tokio::test]
async fn moto_boots_and_terminates_ec2_instances() {
    use test_looper_aws::ec2::types::{InstanceStateName, InstanceType};
    let moto = MotoServer::start();
    let config = test_looper_aws::sdk_config(&moto.aws_settings()).await;
    let ec2 = test_looper_aws::ec2_client(&config);
    let booted = ec2
        .run_instances()
        .image_id("ami-12345678")
        .instance_type(InstanceType::T3Medium)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let id = booted.instances()[0].instance_id().unwrap().to_string();
    ec2.terminate_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let described = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .unwrap();
    let state = described.reservations()[0].instances()[0]
        .state()
        .and_then(|s| s.name())
        .cloned();
    assert!(
        matches!(
            state,
            Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
        ),
        "{state:?}"
    );
}

#[tokio::test]
async fn docker_runs_the_base_image_and_cleans_up() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{
        CreateContainerOptionsBuilder, LogsOptionsBuilder, WaitContainerOptions,
    };
    let engine = DockerEngine::connect().await;
    let docker = engine.client().clone();
    let name = format!("{}-echo", engine.scope());
    let body = ContainerCreateBody {
        image: Some(test_looper_tests::docker_engine::BASE_IMAGE.into()),
        cmd: Some(vec![
            "bash".into(),
            "-c".into(),
            "echo $((6 * 7)) from $(uname -s)".into(),
        ]),
        labels: Some(engine.labels()),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(&name).build();
    let created = docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(&created.id, None).await.unwrap();
    let exit = docker
        .wait_container(&created.id, None::<WaitContainerOptions>)
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.status_code, 0);
    let logs: Vec<String> = docker
        .logs(
            &created.id,
            Some(LogsOptionsBuilder::default().stdout(true).build()),
        )
        .map(|chunk| chunk.unwrap().to_string())
        .collect()
        .await;
    assert_eq!(logs.concat().trim(), "42 from Linux");

    let scope = engine.scope().to_string();
    let probe = DockerEngine::connect().await;
    assert_eq!(
        probe
            .containers_labelled(test_looper_tests::docker_engine::SCOPE_LABEL, &scope)
            .await
            .len(),
        1
    );
    drop(engine);
    assert!(
        probe
            .containers_labelled(test_looper_tests::docker_engine::SCOPE_LABEL, &scope)
            .await
            .is_empty(),
        "dropping the engine removes its containers"
    );
}

//! An agent is known by the host its token speaks for: over a real gRPC socket, a stream whose
//! batch carries another host's series is refused whole and nothing of it is stored; a token taken
//! out of the tokens file ends the streams it opened.

use std::os::unix::fs::PermissionsExt;

use lookout_collector::model::Matcher;
use lookout_proto::v1::{
    agent_message, ingest_client::IngestClient, AgentMessage, Batch, Hello, Label, SeriesGroup, SeriesSamples,
};
use tokio_util::sync::CancellationToken;

fn label(name: &str, value: &str) -> Label {
    Label { name: name.into(), value: value.into() }
}

fn batch(seq: u64, host: &str) -> AgentMessage {
    let series = SeriesSamples {
        labels: vec![label("__name__", "node_load1")],
        timestamps_ms: vec![lookout_collector::clock::now_ms()],
        values: vec![0.5],
    };
    let group = SeriesGroup { labels: vec![label("host", host)], series: vec![series] };
    AgentMessage { msg: Some(agent_message::Msg::Batch(Batch { seq, groups: vec![group], ..Default::default() })) }
}

/// A collector on loopback whose tokens file (mode 600) holds `tokens`; also the file's path.
async fn start(
    dir: &std::path::Path,
    tokens: &str,
) -> (CancellationToken, lookout_collector::Running, std::path::PathBuf) {
    let file = dir.join("tokens");
    std::fs::write(&file, tokens).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg: lookout_collector::CollectorConfig = toml::from_str(&format!(
        "data_dir = \"{}\"\nhttp_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\ntokens_file = \"{}\"\n",
        dir.join("db").display(),
        file.display()
    ))
    .unwrap();
    let stop = CancellationToken::new();
    let running = lookout_collector::start(cfg, stop.clone()).await.unwrap();
    (stop, running, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_for_another_host_is_refused_whole_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let token = "a-token-for-host-a-only-0123456789";
    let (stop, running, _) =
        start(dir.path(), &format!("host-a agent {} a\n", lookout_collector::auth::hash_hex(token))).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let mut client = IngestClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    });

    let hello = |host: &str| AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            agent_id: "agent-1".into(),
            host: host.into(),
            ..Default::default()
        })),
    };
    // Its own host: acked and stored.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello("a")).await.unwrap();
    tx.send(batch(1, "a")).await.unwrap();
    let mut answers = client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let _welcome = answers.message().await.unwrap().expect("welcome");
    let ack = answers.message().await.unwrap().expect("an ack for its own host's batch");
    assert!(format!("{ack:?}").contains("Ack"), "{ack:?}");

    // Another host's series on the same stream: refused, the stream ends, nothing stored.
    tx.send(batch(2, "b")).await.unwrap();
    let refused = answers.message().await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("batch 2 has data for host \"b\""), "{}", refused.message());
    drop(tx);

    // Saying it is host b in Hello: refused before anything is read.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello("b")).await.unwrap();
    let refused = match client.stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(refused.message(), "token host-a speaks for hosts a, not for host \"b\"");

    assert_eq!(running.store.series(&[Matcher::equal("host", "a")]).len(), 1);
    assert!(running.store.series(&[Matcher::equal("host", "b")]).is_empty(), "nothing of host b is stored");
    stop.cancel();
    running.done.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_taken_out_of_the_tokens_file_ends_its_open_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = ("the-old-token-of-host-a-0123456789", "the-new-token-of-host-a-0123456789");
    let entry = |t: &str| format!("host-a agent {} a\n", lookout_collector::auth::hash_hex(t));
    let (stop, running, tokens) = start(dir.path(), &entry(old)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let with = |token: &str| {
        let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        IngestClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        })
    };
    let hello = AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello {
            agent_id: "agent-a".into(),
            host: "a".into(),
            ..Default::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello.clone()).await.unwrap();
    let mut answers = with(old).stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let _welcome = answers.message().await.unwrap().expect("welcome");

    // The operator rotates host a's token; the stream that came in with the old one ends.
    std::fs::write(&tokens, entry(new)).unwrap();
    let mut seq = 0;
    let ended = loop {
        seq += 1;
        assert!(seq < 60, "the stream with a revoked token was still acked after 30 s");
        tx.send(batch(seq, "a")).await.unwrap();
        match answers.message().await {
            Ok(Some(_ack)) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            Ok(None) => panic!("the stream ended without saying why"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::PermissionDenied);
    assert!(ended.message().contains("token host-a was revoked"), "{}", ended.message());

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello.clone()).await.unwrap();
    let refused = match with(old).stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Err(s) => s,
        Ok(r) => r.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "the old token opens no new stream");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello).await.unwrap();
    tx.send(batch(seq + 1, "a")).await.unwrap();
    let mut answers = with(new).stream(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let _welcome = answers.message().await.unwrap().expect("welcome with the new token");
    assert!(format!("{:?}", answers.message().await.unwrap()).contains("Ack"), "the new token writes");
    stop.cancel();
    running.done.await.unwrap().unwrap();
}

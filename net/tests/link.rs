//! Links over real QUIC on 127.0.0.1 with certificates from real CAs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_net::link::{CLOSE_MALFORMED_FRAME, RESET_NO_RESPONSE};
use respawn_net::pki::PeerKind;
use respawn_net::{serve_requests, tls, CaBundle, Endpoint, Identity, Link, NetError, Pki};
use respawn_types::agent::{
    AgentReply, AgentToServer, ErrorCode, ServerReply, ServerToAgent, WireError, MAX_FRAME_LEN,
};
use respawn_types::ProcessId;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Barrier};

/// Generous bound on anything that should happen promptly; a test that hits
/// it has failed, it is never waited out on success.
const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {DEADLINE:?}"),
    }
}

struct Cluster {
    ca: CaBundle,
    node: Identity,
    agent: Identity,
}

fn cluster() -> Cluster {
    let ca = Pki::generate_ca("test CA").unwrap();
    let node = ca.issue(PeerKind::Node, "node-1", &[]).unwrap();
    let agent = ca.issue(PeerKind::Agent, "host-1", &[]).unwrap();
    Cluster { ca, node, agent }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn pid(i: usize) -> ProcessId {
    ProcessId::new_unchecked(format!("proc-{i}"))
}

/// A raw quinn client presenting `identity`: it can send arbitrary bytes.
async fn raw_connect(addr: SocketAddr, config: quinn::ClientConfig) -> quinn::Connection {
    let mut ep = quinn::Endpoint::client(loopback()).unwrap();
    ep.set_default_client_config(config);
    within("raw connect", ep.connect(addr, tls::SERVER_NAME).unwrap())
        .await
        .unwrap()
}

/// Accepts links forever, serving `AgentToServer` requests on each; reports
/// every `serve_requests` result.
fn spawn_echo_server(server: Endpoint) -> mpsc::UnboundedReceiver<Result<(), NetError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let Ok(link) = accepted else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = serve_requests(link, |req: AgentToServer| async move {
                    match req {
                        AgentToServer::ProcessEnding { .. } => ServerReply::Ok,
                        other => ServerReply::Err(WireError::new(
                            ErrorCode::BadRequest,
                            format!("{other:?}"),
                        )),
                    }
                })
                .await;
                let _ = tx.send(result);
            });
        }
    });
    rx
}

#[tokio::test]
async fn mtls_handshake_shows_peer_identity_on_both_sides() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Endpoint::client(&c.agent).unwrap();

    let (client_link, server_link) = within("handshake", async {
        tokio::join!(client.connect(addr), server.accept())
    })
    .await;
    let client_link = client_link.unwrap();
    let server_link = server_link.unwrap().unwrap();

    assert_eq!(client_link.peer().name, "node-1");
    assert_eq!(client_link.peer().kind, PeerKind::Node);
    assert_eq!(client_link.peer().addr, addr);
    assert_eq!(server_link.peer().name, "host-1");
    assert_eq!(server_link.peer().kind, PeerKind::Agent);
    assert_eq!(server_link.peer().addr.ip(), addr.ip());
    assert!(client_link.close_reason().is_none());

    // A normal close reaches the other side.
    client_link.close("bye");
    let why = within("close seen by server", server_link.closed()).await;
    assert!(
        matches!(&why, NetError::Connection(quinn::ConnectionError::ApplicationClosed(c)) if &c.reason[..] == b"bye"),
        "{why:?}"
    );
}

/// A request on a link the server should have refused must fail.
async fn assert_refused(link: Result<Link, NetError>) {
    let Ok(link) = link else { return };
    let res: Result<ServerReply, NetError> = link
        .request(
            &AgentToServer::ProcessEnding { process_id: pid(1) },
            DEADLINE,
        )
        .await;
    assert!(
        res.is_err(),
        "request over a refused link succeeded: {res:?}"
    );
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let _served = spawn_echo_server(server.clone());

    // Signed by a foreign CA, but trusting the real one (so only the server
    // can object).
    let foreign = Pki::generate_ca("foreign CA").unwrap();
    let mut intruder = foreign.issue(PeerKind::Agent, "host-1", &[]).unwrap();
    intruder.ca_pem = c.ca.cert_pem().to_owned();
    let client = Endpoint::client(&intruder).unwrap();
    let link = within("connect", client.connect(addr)).await;
    within("refusal", assert_refused(link)).await;

    // The well-behaved agent is still served.
    let good = Endpoint::client(&c.agent).unwrap();
    let link = within("connect", good.connect(addr)).await.unwrap();
    let reply: ServerReply = link
        .request(
            &AgentToServer::ProcessEnding { process_id: pid(1) },
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(reply, ServerReply::Ok);
}

#[tokio::test]
async fn server_from_another_ca_is_refused_by_the_client() {
    let c = cluster();
    let foreign = Pki::generate_ca("foreign CA").unwrap();
    let impostor = foreign.issue(PeerKind::Node, "node-1", &[]).unwrap();
    let server = Endpoint::server(loopback(), &impostor).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Endpoint::client(&c.agent).unwrap();
    let err = within("connect", client.connect(addr)).await.unwrap_err();
    assert!(matches!(err, NetError::Connection(_)), "{err:?}");
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in c.node.ca_certs().unwrap() {
        roots.add(cert).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![tls::ALPN.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));

    let mut ep = quinn::Endpoint::client(loopback()).unwrap();
    ep.set_default_client_config(config);
    let connecting = ep.connect(addr, tls::SERVER_NAME).unwrap();
    let client_side = async {
        let conn = connecting.await?;
        // TLS 1.3 may let the client finish before the server has checked
        // it; then the server's refusal arrives as a close.
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&[0, 0, 0, 0]).await?;
        let _ = send.finish();
        let mut buf = [0u8; 1];
        recv.read_exact(&mut buf).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let (client_result, accepted) = within("refusal", async {
        tokio::join!(client_side, server.accept())
    })
    .await;
    assert!(client_result.is_err(), "unauthenticated client got through");
    let accepted = accepted.expect("endpoint is open");
    // Refused by TLS itself (the handshake fails), not merely dropped later
    // for lacking an identity.
    let err = accepted.expect_err("server accepted a client without certificate");
    assert!(matches!(err, NetError::Connection(_)), "{err:?}");
}

#[tokio::test]
async fn server_must_be_a_node() {
    let c = cluster();
    // An agent certificate used to listen: a client must not talk to it.
    let server = Endpoint::server(loopback(), &c.agent).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Endpoint::client(&c.node).unwrap();
    let err = within("connect", client.connect(addr)).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::UnexpectedPeerKind {
                expected: PeerKind::Node,
                got: PeerKind::Agent
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn hundred_concurrent_requests_in_both_directions() {
    const N: usize = 100;
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Endpoint::client(&c.agent).unwrap();
    let (client_link, server_link) = within("handshake", async {
        tokio::join!(client.connect(addr), server.accept())
    })
    .await;
    let client_link = client_link.unwrap();
    let server_link = server_link.unwrap().unwrap();

    // Each handler waits on a barrier of N: the requests can only complete
    // if all N are being handled at the same time.
    let server_barrier = Arc::new(Barrier::new(N));
    let server_serve = tokio::spawn(serve_requests(server_link.clone(), {
        let barrier = server_barrier.clone();
        move |req: AgentToServer| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                match req {
                    AgentToServer::ProcessEnding { process_id } => {
                        ServerReply::Err(WireError::new(ErrorCode::NotFound, process_id.as_str()))
                    }
                    _ => ServerReply::Ok,
                }
            }
        }
    }));
    let client_barrier = Arc::new(Barrier::new(N));
    let client_serve = tokio::spawn(serve_requests(client_link.clone(), {
        let barrier = client_barrier.clone();
        move |req: ServerToAgent| {
            let barrier = barrier.clone();
            async move {
                barrier.wait().await;
                match req {
                    ServerToAgent::KillProcess { process_id } => {
                        AgentReply::Err(WireError::new(ErrorCode::Conflict, process_id.as_str()))
                    }
                    _ => AgentReply::Ok,
                }
            }
        }
    }));

    let mut requests = tokio::task::JoinSet::new();
    for i in 0..N {
        let up = client_link.clone();
        requests.spawn(async move {
            let reply: ServerReply = up
                .request(
                    &AgentToServer::ProcessEnding { process_id: pid(i) },
                    DEADLINE,
                )
                .await
                .unwrap();
            assert_eq!(
                reply,
                ServerReply::Err(WireError::new(ErrorCode::NotFound, format!("proc-{i}")))
            );
        });
        let down = server_link.clone();
        requests.spawn(async move {
            let reply: AgentReply = down
                .request(&ServerToAgent::KillProcess { process_id: pid(i) }, DEADLINE)
                .await
                .unwrap();
            assert_eq!(
                reply,
                AgentReply::Err(WireError::new(ErrorCode::Conflict, format!("proc-{i}")))
            );
        });
    }
    let mut done = 0;
    within("all replies", async {
        while let Some(r) = requests.join_next().await {
            r.unwrap();
            done += 1;
        }
    })
    .await;
    assert_eq!(done, 2 * N);

    // Closing normally ends both serve loops with Ok.
    client_link.close("done");
    within("client serve ends", client_serve)
        .await
        .unwrap()
        .unwrap();
    within("server serve ends", server_serve)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn malformed_frames_close_the_connection_and_others_are_still_served() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let mut results = spawn_echo_server(server.clone());
    let config = tls::client_config(&c.agent).unwrap();

    // (bytes sent, what serve_requests must report)
    let huge = u32::MAX.to_be_bytes().to_vec();
    let just_over = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    let garbage = vec![0, 0, 0, 3, 0xfe, 0xfe, 0xfe];
    let cut = vec![0, 0, 0, 50, 1, 2];
    type Expect = fn(&NetError) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (huge, |e| matches!(e, NetError::FrameTooLarge { .. })),
        (just_over, |e| matches!(e, NetError::FrameTooLarge { .. })),
        (garbage, |e| matches!(e, NetError::Decode(_))),
        (cut, |e| matches!(e, NetError::Truncated { .. })),
    ];
    for (bytes, expected) in cases {
        let conn = raw_connect(addr, config.clone()).await;
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();

        let why = within("bad peer disconnected", conn.closed()).await;
        match &why {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(
                    close.error_code,
                    quinn::VarInt::from_u32(CLOSE_MALFORMED_FRAME)
                );
                let reason = String::from_utf8_lossy(&close.reason);
                assert!(reason.starts_with("malformed frame"), "{reason}");
            }
            other => panic!("unexpected close {other:?} for {bytes:?}"),
        }
        let served = within("serve_requests returns", results.recv())
            .await
            .unwrap();
        let err = served.unwrap_err();
        assert!(expected(&err), "{bytes:?}: {err:?}");
    }

    // A well-behaved client, on a fresh connection, is served normally.
    let good = Endpoint::client(&c.agent).unwrap();
    let link = within("connect", good.connect(addr)).await.unwrap();
    let reply: ServerReply = link
        .request(
            &AgentToServer::ProcessEnding { process_id: pid(9) },
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(reply, ServerReply::Ok);
}

#[tokio::test]
async fn malformed_reply_closes_the_link_for_the_requester() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    // A server that answers every request with garbage.
    tokio::spawn({
        let server = server.clone();
        async move {
            let link = server.accept().await.unwrap().unwrap();
            let (_req, responder) = link.accept_request::<AgentToServer>().await.unwrap();
            // A bincode bool is 0 or 1; 7 is not.
            responder.respond(&7u8).await.unwrap();
            link.closed().await;
        }
    });
    let client = Endpoint::client(&c.agent).unwrap();
    let link = within("connect", client.connect(addr)).await.unwrap();
    let err = link
        .request::<_, bool>(
            &AgentToServer::ProcessEnding { process_id: pid(1) },
            DEADLINE,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Decode(_)), "{err:?}");
    assert!(link.close_reason().is_some(), "link must be closed");
}

#[tokio::test]
async fn dropped_responder_timeout_and_oversized_request_leave_the_link_up() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let client = Endpoint::client(&c.agent).unwrap();
    let (client_link, server_link) = within("handshake", async {
        tokio::join!(client.connect(addr), server.accept())
    })
    .await;
    let client_link = client_link.unwrap();
    let server_link = server_link.unwrap().unwrap();

    // The server drops the first request unanswered, sits on the second,
    // and answers the third.
    let (held_tx, mut held_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (_, dropped) = server_link.accept_request::<AgentToServer>().await.unwrap();
        drop(dropped);
        let (_, held) = server_link.accept_request::<AgentToServer>().await.unwrap();
        let _ = held_tx.send(held);
        let (_, answered) = server_link.accept_request::<AgentToServer>().await.unwrap();
        answered.respond(&ServerReply::Ok).await.unwrap();
    });

    let req = AgentToServer::ProcessEnding { process_id: pid(1) };
    let err = client_link
        .request::<_, ServerReply>(&req, DEADLINE)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::StreamReset { code } if code == u64::from(RESET_NO_RESPONSE)),
        "{err:?}"
    );

    let short = Duration::from_millis(200);
    let err = client_link
        .request::<_, ServerReply>(&req, short)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Timeout {
                what: "request",
                ..
            }
        ),
        "{err:?}"
    );
    // The server did receive it (it is holding the responder).
    let _held = within("held request", held_rx.recv()).await.unwrap();

    // Too large to send: refused locally, nothing reaches the server.
    let huge = vec![1u8; MAX_FRAME_LEN + 1];
    let err = client_link
        .request::<_, ServerReply>(&huge, DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::FrameTooLarge { .. }), "{err:?}");

    let reply: ServerReply = client_link.request(&req, DEADLINE).await.unwrap();
    assert_eq!(reply, ServerReply::Ok);
    assert!(client_link.close_reason().is_none());
}

/// `Endpoint::shutdown` returns once the UDP socket is closed, with links
/// open and a request in progress when it is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_port_with_links_open() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    // A server whose link tasks belong to its accept loop, with a handler
    // that never answers.
    // Told when a request reaches the server's handler.
    let (arrived, mut in_flight) = tokio::sync::mpsc::unbounded_channel::<()>();
    let accept = {
        let server = server.clone();
        tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Some(accepted) = server.accept().await {
                let Ok(link) = accepted else { continue };
                let arrived = arrived.clone();
                links.spawn(serve_requests(link, move |_: AgentToServer| {
                    let _ = arrived.send(());
                    async { std::future::pending::<ServerReply>().await }
                }));
            }
            links.shutdown().await;
        })
    };
    let client = Endpoint::client(&c.agent).unwrap();
    let mut links = Vec::new();
    for _ in 0..3 {
        links.push(within("connect", client.connect(addr)).await.unwrap());
    }
    let stuck = {
        let link = links[0].clone();
        tokio::spawn(async move {
            link.request::<_, ServerReply>(
                &AgentToServer::ProcessEnding { process_id: pid(1) },
                DEADLINE,
            )
            .await
        })
    };
    // The request is in flight: the server's handler holds it.
    within("request in flight", in_flight.recv()).await.unwrap();

    within("shutdown", server.shutdown(DEADLINE)).await.unwrap();
    // Bound again at once, no retry.
    let again = std::net::UdpSocket::bind(addr).unwrap();
    drop(again);
    within("accept loop end", accept).await.unwrap();
    // The client side learnt of the close at once.
    let res = within("stuck request", stuck).await.unwrap();
    assert!(res.is_err(), "{res:?}");
    for link in &links {
        within("client sees close", link.closed()).await;
    }
}

/// A silenced endpoint (a crash) tells its peers nothing: the client's
/// link is not closed and is not told "going away" (unlike `close`, whose
/// close reaches it); its requests go unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_endpoint_tells_its_peers_nothing() {
    let c = cluster();
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let _served = spawn_echo_server(server.clone());
    let client = Endpoint::client(&c.agent).unwrap();
    let crashed = within("connect", client.connect(addr)).await.unwrap();
    let req = AgentToServer::ProcessEnding { process_id: pid(1) };
    let reply: ServerReply = crashed.request(&req, DEADLINE).await.unwrap();
    assert_eq!(reply, ServerReply::Ok);

    server.silence();
    let err = crashed
        .request::<_, ServerReply>(&req, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
    assert!(crashed.close_reason().is_none(), "the peer heard a close");
    assert!(!crashed.peer_went_away());

    // The same with an orderly close: the client hears it.
    let server = Endpoint::server(loopback(), &c.node).unwrap();
    let addr = server.local_addr().unwrap();
    let _served = spawn_echo_server(server.clone());
    let stopped = within("connect", client.connect(addr)).await.unwrap();
    let _: ServerReply = stopped.request(&req, DEADLINE).await.unwrap();
    server.close();
    within("the close heard", stopped.closed()).await;
    assert!(stopped.peer_went_away());
}

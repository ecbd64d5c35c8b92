//! The node↔node transports: `MemRouter` (fault injection, on tokio's
//! paused clock so that delays and timeouts are exact) and `QuicTransport`
//! (real QUIC on 127.0.0.1 with node certificates from one CA).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use respawn_net::transport::DEFAULT_NODE_CONNECT_TIMEOUT;
use respawn_net::{
    node_name, parse_node_name, serve_node_link, CaBundle, Endpoint, Handler, Identity, MemRouter,
    NetError, PeerKind, Pki, QuicTransport, Service, SharedTransport, Transport, TransportError,
    MAX_NODE_FRAME_LEN,
};
use respawn_types::agent::MAX_FRAME_LEN;
use respawn_types::NodeId;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Generous bound on anything that should happen promptly; never waited
/// out on success.
const DEADLINE: Duration = Duration::from_secs(20);
const T: Duration = Duration::from_secs(1);

async fn within<O>(what: &str, fut: impl Future<Output = O>) -> O {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not happen within {DEADLINE:?}"),
    }
}

/// Answers `"<me><-<from>:<service>|"` followed by the payload, and counts
/// the requests it handled.
struct Echo {
    me: NodeId,
    handled: Arc<AtomicUsize>,
}

impl Echo {
    fn new(me: NodeId) -> Arc<Echo> {
        Arc::new(Echo {
            me,
            handled: Arc::new(AtomicUsize::new(0)),
        })
    }
}

impl Handler for Echo {
    fn handle(&self, from: NodeId, service: Service, payload: Bytes) -> BoxFuture<'static, Bytes> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        let mut reply = format!("{}<-{from}:{service:?}|", self.me).into_bytes();
        reply.extend_from_slice(&payload);
        async move { Bytes::from(reply) }.boxed()
    }
}

/// Answers its first request only (per handler instance).
struct AnswerOnce(AtomicUsize);

impl Handler for AnswerOnce {
    fn handle(&self, _: NodeId, _: Service, _: Bytes) -> BoxFuture<'static, Bytes> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            async { Bytes::from_static(b"first") }.boxed()
        } else {
            futures::future::pending().boxed()
        }
    }
}

/// Never answers.
struct Silent;

impl Handler for Silent {
    fn handle(&self, _: NodeId, _: Service, _: Bytes) -> BoxFuture<'static, Bytes> {
        futures::future::pending().boxed()
    }
}

fn expect(me: NodeId, from: NodeId, service: Service, payload: &[u8]) -> Bytes {
    let mut v = format!("{me}<-{from}:{service:?}|").into_bytes();
    v.extend_from_slice(payload);
    Bytes::from(v)
}

async fn ping(t: &SharedTransport, to: NodeId) -> Result<Bytes, TransportError> {
    t.call(to, Service::Raft, Bytes::from_static(b"ping"), T)
        .await
}

// ----- names -----

#[test]
fn node_names_round_trip_and_odd_names_are_refused() {
    for id in [0, 1, 42, u64::MAX] {
        assert_eq!(parse_node_name(&node_name(id)), Some(id));
    }
    assert_eq!(node_name(7), "node-7");
    for bad in [
        "node-",
        "node-01",
        "node-+1",
        "node--1",
        "node-1a",
        "node-1 ",
        "Node-1",
        "host-1",
        "node-18446744073709551616",
        "1",
    ] {
        assert_eq!(parse_node_name(bad), None, "{bad:?}");
    }
}

// ----- MemRouter -----

fn mem_cluster(router: &Arc<MemRouter>, ids: &[NodeId]) -> Vec<SharedTransport> {
    ids.iter()
        .map(|&id| {
            router.register(id, Echo::new(id));
            router.transport(id)
        })
        .collect()
}

fn unreachable(r: Result<Bytes, TransportError>) -> bool {
    matches!(r, Err(TransportError::Unreachable(..)))
}

#[tokio::test(start_paused = true)]
async fn mem_calls_carry_the_sender_and_count_messages() {
    let router = MemRouter::new();
    let t = mem_cluster(&router, &[1, 2, 3]);
    let reply = t[0]
        .call(2, Service::Cluster, Bytes::from_static(b"hi"), T)
        .await
        .unwrap();
    assert_eq!(reply, expect(2, 1, Service::Cluster, b"hi"));
    assert_eq!(
        ping(&t[2], 1).await.unwrap(),
        expect(1, 3, Service::Raft, b"ping")
    );
    let cluster = router.stats(Service::Cluster);
    assert_eq!(
        (cluster.sent, cluster.delivered, cluster.dropped),
        (1, 1, 0)
    );
    let raft = router.stats(Service::Raft);
    assert_eq!((raft.sent, raft.delivered, raft.dropped), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn mem_partitions_cut_both_directions_and_heal() {
    let router = MemRouter::new();
    let t = mem_cluster(&router, &[1, 2, 3]);
    router.partition(&[1], &[2, 3]);
    assert!(unreachable(ping(&t[0], 2).await));
    assert!(unreachable(ping(&t[1], 1).await));
    assert!(unreachable(ping(&t[2], 1).await));
    assert!(
        ping(&t[1], 3).await.is_ok(),
        "the majority side still talks"
    );
    // A second partition at the same time.
    router.partition(&[2], &[3]);
    assert!(unreachable(ping(&t[1], 3).await));
    assert!(unreachable(ping(&t[2], 2).await));
    assert!(ping(&t[0], 1).await.is_ok(), "a node reaches itself");
    router.heal();
    for (from, transport) in (1..=3).zip(&t) {
        for to in 1..=3 {
            assert!(ping(transport, to).await.is_ok(), "{from} -> {to}");
        }
    }
    assert_eq!(router.stats(Service::Raft).dropped, 5);
}

#[tokio::test(start_paused = true)]
async fn mem_isolate_covers_nodes_registered_later() {
    let router = MemRouter::new();
    let t = mem_cluster(&router, &[1, 2, 3]);
    router.isolate(3);
    assert!(unreachable(ping(&t[2], 1).await));
    assert!(unreachable(ping(&t[0], 3).await));
    assert!(ping(&t[0], 2).await.is_ok());
    router.register(4, Echo::new(4));
    let t4 = router.transport(4);
    assert!(unreachable(ping(&t4, 3).await));
    assert!(ping(&t4, 1).await.is_ok());
    router.heal();
    assert!(ping(&t4, 3).await.is_ok());
    assert!(ping(&t[2], 1).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn mem_unregistered_nodes_neither_receive_nor_send() {
    let router = MemRouter::new();
    let t = mem_cluster(&router, &[1, 2]);
    router.unregister(2);
    let err = ping(&t[0], 2).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable(2, why) if why.contains("down")),
        "{err:?}"
    );
    assert!(unreachable(ping(&t[1], 1).await), "a down node cannot send");
    assert!(unreachable(ping(&t[0], 9).await), "never registered");
    let back = Echo::new(2);
    router.register(2, back.clone());
    assert_eq!(
        ping(&t[0], 2).await.unwrap(),
        expect(2, 1, Service::Raft, b"ping")
    );
    assert_eq!(back.handled.load(Ordering::SeqCst), 1);
}

/// Sends `n` pings one after another; returns which ones got through.
async fn outcomes(router: &Arc<MemRouter>, n: usize) -> Vec<bool> {
    let t = router.transport(1);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = t
            .call(2, Service::Raft, Bytes::new(), Duration::from_millis(10))
            .await;
        match r {
            Ok(_) => out.push(true),
            Err(TransportError::Timeout(2, _)) => out.push(false),
            Err(e) => panic!("a dropped message times out: {e:?}"),
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn mem_drop_rate_is_reproducible_from_the_seed() {
    let run = |seed| async move {
        let router = MemRouter::with_seed(seed);
        mem_cluster(&router, &[1, 2]);
        router.set_drop_rate(0.3);
        let out = outcomes(&router, 400).await;
        let stats = router.stats(Service::Raft);
        let lost = out.iter().filter(|ok| !**ok).count() as u64;
        assert_eq!(stats.dropped, lost);
        assert_eq!(stats.sent, 400);
        assert_eq!(stats.delivered, 400 - lost);
        out
    };
    let a = run(7).await;
    let b = run(7).await;
    let c = run(8).await;
    assert_eq!(a, b, "same seed, same fate for every message");
    assert_ne!(a, c, "another seed draws differently");
    let lost = a.iter().filter(|ok| !**ok).count();
    // 400 draws at p = 0.3: mean 120, sd ~9.2; the bounds are > 5 sd away.
    assert!((70..=170).contains(&lost), "{lost} of 400 lost");

    // Rate 0 and 1 are exact.
    let router = MemRouter::with_seed(1);
    mem_cluster(&router, &[1, 2]);
    router.set_drop_rate(1.0);
    assert!(outcomes(&router, 20).await.iter().all(|ok| !ok));
    router.set_drop_rate(0.0);
    assert!(outcomes(&router, 20).await.iter().all(|ok| *ok));
}

#[tokio::test(start_paused = true)]
async fn mem_lost_replies_and_link_drops() {
    let router = MemRouter::with_seed(3);
    let echo2 = Echo::new(2);
    router.register(1, Echo::new(1));
    router.register(2, echo2.clone());
    router.register(3, Echo::new(3));
    let t1 = router.transport(1);
    let t2 = router.transport(2);

    // The request is handled, the reply lost: the caller times out.
    router.set_reply_drop_rate(1.0);
    let start = Instant::now();
    let err = ping(&t1, 2).await.unwrap_err();
    assert_eq!(err, TransportError::Timeout(2, T));
    assert_eq!(start.elapsed(), T, "waits out its own timeout");
    assert_eq!(echo2.handled.load(Ordering::SeqCst), 1);
    assert_eq!(router.stats(Service::Raft).replies_dropped, 1);
    router.set_reply_drop_rate(0.0);

    // One direction of one link.
    router.set_link_drop(1, 2, 1.0);
    assert!(matches!(
        ping(&t1, 2).await,
        Err(TransportError::Timeout(..))
    ));
    let handled = echo2.handled.load(Ordering::SeqCst);
    // 2 -> 1 requests arrive, but 1's replies travel 1 -> 2 and are lost.
    assert!(matches!(
        ping(&t2, 1).await,
        Err(TransportError::Timeout(..))
    ));
    assert_eq!(echo2.handled.load(Ordering::SeqCst), handled);
    assert!(ping(&t1, 3).await.is_ok(), "other links are untouched");
    router.set_link_drop(1, 2, 0.0);
    assert!(ping(&t1, 2).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn mem_delays_are_bounded_and_timeouts_honoured() {
    let router = MemRouter::with_seed(11);
    let t = mem_cluster(&router, &[1, 2]);
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(30));
    router.set_delay(min, max);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let start = Instant::now();
        ping(&t[0], 2).await.unwrap();
        let took = start.elapsed();
        // Request and reply are each delayed within [min, max].
        assert!(took >= 2 * min && took <= 2 * max, "{took:?}");
        seen.insert(took);
    }
    assert!(seen.len() > 10, "delays vary: {seen:?}");

    // A call slower than its timeout fails at the timeout.
    router.set_delay(Duration::from_millis(100), Duration::from_millis(100));
    let start = Instant::now();
    let short = Duration::from_millis(150);
    let err = t[0]
        .call(2, Service::Raft, Bytes::new(), short)
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::Timeout(2, short));
    assert_eq!(start.elapsed(), short);

    // A handler that never answers.
    router.set_delay(Duration::ZERO, Duration::ZERO);
    router.register(3, Arc::new(Silent));
    let start = Instant::now();
    let err = ping(&t[0], 3).await.unwrap_err();
    assert_eq!(err, TransportError::Timeout(3, T));
    assert_eq!(start.elapsed(), T);
}

// ----- QuicTransport -----

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Accepts links and serves node requests on each with `handler`;
/// reports each `serve_node_link` result.
fn spawn_accept_loop(
    server: Endpoint,
    handler: Arc<dyn Handler>,
) -> mpsc::UnboundedReceiver<Result<(), NetError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let Ok(link) = accepted else { continue };
            let handler = Arc::clone(&handler);
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(serve_node_link(link, handler).await);
            });
        }
    });
    rx
}

struct QuicNode {
    id: NodeId,
    endpoint: Endpoint,
    addr: SocketAddr,
    transport: Arc<QuicTransport>,
    served: mpsc::UnboundedReceiver<Result<(), NetError>>,
}

fn quic_node(ca: &CaBundle, id: NodeId, bind: SocketAddr) -> QuicNode {
    let identity = ca.issue(PeerKind::Node, &node_name(id), &[]).unwrap();
    quic_node_with(&identity, id, bind)
}

fn quic_node_with(identity: &Identity, id: NodeId, bind: SocketAddr) -> QuicNode {
    let endpoint = Endpoint::server(bind, identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let served = spawn_accept_loop(endpoint.clone(), Echo::new(id));
    let transport = QuicTransport::new(id, endpoint.clone());
    QuicNode {
        id,
        endpoint,
        addr,
        transport,
        served,
    }
}

#[tokio::test]
async fn quic_three_nodes_call_each_other_with_authenticated_senders() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let nodes: Vec<QuicNode> = (1..=3).map(|i| quic_node(&ca, i, loopback())).collect();
    for a in &nodes {
        for b in &nodes {
            a.transport.set_address(b.id, &b.addr.to_string());
        }
    }
    for a in &nodes {
        for b in &nodes {
            if a.id == b.id {
                continue;
            }
            let t: &dyn Transport = &*a.transport;
            let reply = within(
                "call",
                t.call(b.id, Service::Cluster, Bytes::from_static(b"x"), DEADLINE),
            )
            .await
            .unwrap();
            assert_eq!(reply, expect(b.id, a.id, Service::Cluster, b"x"));
        }
    }

    // Many concurrent calls share one link per peer.
    let t: Arc<dyn Transport> = nodes[0].transport.clone();
    let calls = (0..50u32).map(|i| {
        let t = Arc::clone(&t);
        async move {
            let payload = Bytes::from(i.to_be_bytes().to_vec());
            let reply = t.call(2, Service::Raft, payload.clone(), DEADLINE).await;
            (reply, payload)
        }
    });
    for (reply, payload) in within("50 calls", futures::future::join_all(calls)).await {
        assert_eq!(reply.unwrap(), expect(2, 1, Service::Raft, &payload));
    }

    // Node links carry frames above the 1 MiB agent limit.
    let big = Bytes::from(vec![0xabu8; 3 * MAX_FRAME_LEN]);
    let reply = within("big call", t.call(3, Service::Raft, big.clone(), DEADLINE))
        .await
        .unwrap();
    assert_eq!(reply, expect(3, 1, Service::Raft, &big));
    // ... but not above the node limit: refused locally, the link stays up.
    let huge = Bytes::from(vec![0u8; MAX_NODE_FRAME_LEN + 1]);
    let err = within("huge call", t.call(3, Service::Raft, huge, DEADLINE))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable(3, why) if why.contains("exceeds")),
        "{err:?}"
    );
    assert!(within("after huge", ping(&t, 3)).await.is_ok());

    // A node nobody told us about.
    let err = ping(&t, 9).await.unwrap_err();
    assert_eq!(err, TransportError::UnknownNode(9));
}

#[tokio::test]
async fn quic_host_names_are_resolved_at_connect_time() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let a = quic_node(&ca, 1, loopback());
    let b = quic_node(&ca, 2, loopback());
    a.transport
        .set_address(2, &format!("localhost:{}", b.addr.port()));
    let t: Arc<dyn Transport> = a.transport.clone();
    assert_eq!(
        within("call by name", ping(&t, 2)).await.unwrap(),
        expect(2, 1, Service::Raft, b"ping")
    );
    a.transport.set_address(3, "no-such-host.invalid:7400");
    let err = within("bad name", ping(&t, 3)).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable(3, why) if why.contains("resolve")),
        "{err:?}"
    );
}

#[tokio::test]
async fn quic_a_peer_with_the_wrong_name_is_refused() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let a = quic_node(&ca, 1, loopback());
    // Listens where node 2 should be, but is node 5.
    let impostor = quic_node(&ca, 5, loopback());
    a.transport.set_address(2, &impostor.addr.to_string());
    let t: Arc<dyn Transport> = a.transport.clone();
    let err = within("call", ping(&t, 2)).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable(2, why) if why.contains("node-5")),
        "{err:?}"
    );
    // Told the right address, the same transport gets through.
    let b = quic_node(&ca, 2, loopback());
    a.transport.set_address(2, &b.addr.to_string());
    assert!(within("call", ping(&t, 2)).await.is_ok());
}

/// A node probed and refused leaves nothing behind: `forget` drops its
/// address and link, and calls to it are to an unknown node again.
#[tokio::test]
async fn quic_forget_drops_a_peer() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let a = quic_node(&ca, 1, loopback());
    let b = quic_node(&ca, 2, loopback());
    a.transport.set_address(2, &b.addr.to_string());
    let t: Arc<dyn Transport> = a.transport.clone();
    assert!(within("call", ping(&t, 2)).await.is_ok());
    t.forget(2);
    assert_eq!(a.transport.address(2), None);
    assert_eq!(
        ping(&t, 2).await.unwrap_err(),
        TransportError::UnknownNode(2)
    );
    // Forgetting a node never known is harmless.
    t.forget(7);
}

#[tokio::test]
async fn quic_server_refuses_peers_that_are_not_named_nodes() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let mut server = quic_node(&ca, 1, loopback());

    // A node certificate whose name is not node-<id>.
    let odd = ca.issue(PeerKind::Node, "node-one", &[]).unwrap();
    let client = Endpoint::client(&odd).unwrap();
    let link = within("connect", client.connect(server.addr))
        .await
        .unwrap();
    let res: Result<Vec<u8>, NetError> = link.request(&(Service::Raft, vec![1u8]), DEADLINE).await;
    assert!(res.is_err(), "served a node without a node id");
    let served = within("serve result", server.served.recv()).await.unwrap();
    assert!(
        matches!(&served, Err(NetError::PeerIdentity(why)) if why.contains("node-one")),
        "{served:?}"
    );

    // An agent certificate.
    let agent = ca.issue(PeerKind::Agent, "node-2", &[]).unwrap();
    let client = Endpoint::client(&agent).unwrap();
    let link = within("connect", client.connect(server.addr))
        .await
        .unwrap();
    let res: Result<Vec<u8>, NetError> = link.request(&(Service::Raft, vec![1u8]), DEADLINE).await;
    assert!(res.is_err(), "served an agent on a node link");
    let served = within("serve result", server.served.recv()).await.unwrap();
    assert!(
        matches!(
            served,
            Err(NetError::UnexpectedPeerKind {
                expected: PeerKind::Node,
                got: PeerKind::Agent
            })
        ),
        "{served:?}"
    );
}

#[tokio::test]
async fn quic_redials_after_calls_keep_timing_out() {
    // A peer that stops answering, as one that restarted without closing
    // its connections would look until the idle timeout.
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let a = quic_node(&ca, 1, loopback());
    let identity = ca.issue(PeerKind::Node, &node_name(2), &[]).unwrap();
    let server = Endpoint::server(loopback(), &identity).unwrap();
    let addr = server.local_addr().unwrap();
    let (links_tx, mut links) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(accepted) = server.accept().await {
            let Ok(link) = accepted else { continue };
            let _ = links_tx.send(link.id());
            tokio::spawn(serve_node_link(
                link,
                Arc::new(AnswerOnce(AtomicUsize::new(0))),
            ));
        }
    });
    a.transport.set_address(2, &addr.to_string());
    let t: Arc<dyn Transport> = a.transport.clone();
    let first = within(
        "first call",
        t.call(2, Service::Raft, Bytes::new(), DEADLINE),
    )
    .await
    .unwrap();
    assert_eq!(first, Bytes::from_static(b"first"));
    let short = Duration::from_millis(100);
    for _ in 0..3 {
        let err = t
            .call(2, Service::Raft, Bytes::new(), short)
            .await
            .unwrap_err();
        assert_eq!(err, TransportError::Timeout(2, short));
    }
    let first = within("first link", links.recv()).await.unwrap();
    assert!(links.try_recv().is_err(), "three calls, one link");
    // The fourth call dials again.
    let _ = t.call(2, Service::Raft, Bytes::new(), short).await;
    let second = within("second link", links.recv()).await.unwrap();
    assert_ne!(first, second);
}

#[tokio::test]
async fn quic_reconnects_after_the_server_restarts() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let a = quic_node(&ca, 1, loopback());
    let b = quic_node(&ca, 2, loopback());
    let addr = b.addr;
    a.transport.set_address(2, &addr.to_string());
    let t: Arc<dyn Transport> = a.transport.clone();
    assert!(within("first call", ping(&t, 2)).await.is_ok());

    // Node 2 goes away: its endpoint closes every connection, and its
    // socket is released when `shutdown` returns (node 2's accept loop and
    // link tasks hold clones until they see the close).
    let QuicNode {
        endpoint,
        transport,
        ..
    } = b;
    drop(transport);
    within("shutdown", endpoint.shutdown(DEADLINE))
        .await
        .unwrap();
    // It said it was going away: the call fails without a connection
    // attempt (the "shut down" answer comes from the transport's memory
    // of the close, not from a connect that timed out).
    let err = within("call to a stopped node", ping(&t, 2))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable(2, why) if why.contains("shut down")),
        "{err:?}"
    );
    let err = ping(&t, 2).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(2, _)), "{err:?}");

    // It comes back on the same address at once.
    let identity = ca.issue(PeerKind::Node, &node_name(2), &[]).unwrap();
    let _b2 = Endpoint::server(addr, &identity).unwrap();
    let _ = spawn_accept_loop(_b2.clone(), Echo::new(2));
    // The transport reconnects on demand.
    let deadline = Instant::now() + DEADLINE;
    loop {
        match ping(&t, 2).await {
            Ok(reply) => {
                assert_eq!(reply, expect(2, 1, Service::Raft, b"ping"));
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnection: {e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(DEFAULT_NODE_CONNECT_TIMEOUT > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_close_drops_the_links_and_releases_the_socket() {
    let ca = Pki::generate_ca("cluster CA").unwrap();
    let a = quic_node(&ca, 1, loopback());
    let b = quic_node(&ca, 2, loopback());
    a.transport.set_address(2, &b.addr.to_string());
    b.transport.set_address(1, &a.addr.to_string());
    let ta: Arc<dyn Transport> = a.transport.clone();
    let tb: Arc<dyn Transport> = b.transport.clone();
    // Links both ways: node 1's endpoint dialled node 2 and serves node 2's
    // link.
    assert!(within("1 -> 2", ping(&ta, 2)).await.is_ok());
    assert!(within("2 -> 1", ping(&tb, 1)).await.is_ok());

    let QuicNode { endpoint, addr, .. } = a;
    drop(endpoint);
    within("close", ta.close(DEADLINE)).await;
    // The port is free as soon as `close` returns.
    std::net::UdpSocket::bind(addr).unwrap();
    let err = ping(&ta, 2).await.unwrap_err();
    assert!(
        matches!(&err, TransportError::Unreachable(2, why) if why.contains("closed")),
        "{err:?}"
    );
    // Node 2's calls fail (its link was closed, nothing answers now).
    let err = within("2 -> 1 after close", ping(&tb, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Unreachable(1, _) | TransportError::Timeout(1, _)
        ),
        "{err:?}"
    );
}

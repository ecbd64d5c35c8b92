//! The agent's QUIC link: cut and restored, garbage on it.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_link_cut_and_restored() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 2,
        ..Options::default()
    })
    .await?;
    c.wait_ready(2).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let host = HostId::new_unchecked(respawn_config::DEV_HOST);
    c.agent().uplink.cut("test cuts the link");
    wait_for("link back", T, || async {
        (c.agent().uplink.is_up() && c.node().links.connected_hosts().contains(&host)).then_some(())
    })
    .await?;
    // The session continues, and new placements reach the agent.
    assert_eq!(
        c.backend.describe(&pl).await?["battle_session_status"],
        "ACTIVE"
    );
    let pl2 = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl2, "FULFILLED", T).await?;
    Ok(())
}

/// An agent connection that sends a malformed or oversized frame is closed
/// with a reason; the server keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_an_agent_closes_only_that_link() -> anyhow::Result<()> {
    let c = Cluster::start(Options {
        processes: 1,
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let (_, agent_id) = respawn_net::ensure_dev_pki(&c.cfg.data_dir)?;
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    ep.set_default_client_config(respawn_net::tls::client_config(&agent_id)?);
    for frame in [
        vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        vec![0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef],
    ] {
        let conn = ep
            .connect(c.node().quic_addr, respawn_net::pki::SERVER_NAME)?
            .await?;
        let (mut send, _recv) = conn.open_bi().await?;
        send.write_all(&frame).await?;
        send.finish()?;
        let why = tokio::time::timeout(T, conn.closed()).await?;
        match why {
            quinn::ConnectionError::ApplicationClosed(a) => {
                assert_eq!(
                    a.error_code,
                    quinn::VarInt::from_u32(respawn_net::link::CLOSE_MALFORMED_FRAME),
                    "{a:?}"
                );
                assert!(!a.reason.is_empty());
            }
            other => panic!("expected an application close, got {other:?}"),
        }
    }
    // The real agent's link is untouched and placements still work.
    assert!(c.agent().uplink.is_up());
    let pl = c.backend.place(DEV_FLEET, &[]).await?;
    c.backend.wait_status(&pl, "FULFILLED", T).await?;
    Ok(())
}

//! System variables from the configuration (docs/virtual-servers.md §9).

use super::*;

/// `PGOS_Title_Logo` is the title region's configured `title_logo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_title_logo_reaches_the_instances() -> anyhow::Result<()> {
    let mut c = cluster().await?;
    c.halt().await;
    let logo = "https://cdn.example/respawn/logo.png";
    c.cfg.title_regions[0].title_logo = logo.into();
    c.boot().await?;
    c.put_vs("vs-a", python_vs_spec(json!({"max_instances": 1})))
        .await?;
    c.wait_vs_running("vs-a", 1).await?;
    let a = c.backend.invoke("GET", "vs-a/env", &[], vec![]).await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["PGOS_Title_Logo"], logo, "{}", a.body);
    Ok(())
}

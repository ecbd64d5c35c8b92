//! The console in a real headless Chromium, driven over WebDriver
//! (chromedriver). Screenshots of each page are saved under
//! `target/tmp/console-screenshots/` for people to look at.

use super::*;
use fantoccini::{Client, ClientBuilder, Locator};
use respawn_config::DEV_FLEET;
use std::path::PathBuf;
use tokio::process::{Child, Command};

/// The first `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: Child,
    url: String,
}

async fn driver() -> anyhow::Result<Driver> {
    let chromium = on_path("chromium").context(
        "chromium is not installed (`.ci/run` installs Debian's chromium and chromium-driver)",
    )?;
    let chromedriver = on_path("chromedriver")
        .context("chromedriver is not installed (`.ci/run` installs Debian's chromium-driver)")?;
    let _ = chromium;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("chromedriver to answer", T, || async {
        let r = http.get(format!("{url}/status")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await?;
    Ok(Driver { _child: child, url })
}

async fn chromium(d: &Driver) -> anyhow::Result<Client> {
    let binary = on_path("chromium").context("chromium")?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": binary,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1300,1100"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    Ok(ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&d.url)
        .await?)
}

struct Shots {
    dir: PathBuf,
    n: u32,
}

impl Shots {
    fn new() -> anyhow::Result<Shots> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir)?;
        Ok(Shots { dir, n: 0 })
    }

    async fn take(&mut self, b: &Client, name: &str) -> anyhow::Result<()> {
        self.n += 1;
        let png = b.screenshot().await?;
        std::fs::write(self.dir.join(format!("{:02}-{name}.png", self.n)), png)?;
        Ok(())
    }
}

/// The text of the element `css` matches, retried until it can be read (a
/// page a click navigated to may still be loading, or replace the element).
async fn text(b: &Client, css: &str) -> anyhow::Result<String> {
    wait_for(&format!("{css} on the page"), T, || async {
        b.find(Locator::Css(css)).await.ok()?.text().await.ok()
    })
    .await
}

/// Waits until `css` shows exactly `want`: after a click that submits a
/// form, the old page stays readable until the new one has loaded.
async fn wait_text(b: &Client, css: &str, want: &str) -> anyhow::Result<()> {
    wait_for(&format!("{css} showing {want:?}"), T, || async {
        let got = b.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
        (got == want).then_some(())
    })
    .await
}

/// Waits until the browser is at `want` (a path), for the same reason.
async fn wait_path(b: &Client, want: &str) -> anyhow::Result<()> {
    wait_for(&format!("the page {want}"), T, || async {
        path(b).await.ok().filter(|p| p == want)
    })
    .await
    .map(|_| ())
}

async fn path(b: &Client) -> anyhow::Result<String> {
    Ok(b.current_url().await?.path().to_string())
}

/// Reloads `url` until `css` matches an element.
async fn wait_element(b: &Client, url: &str, css: &str) -> anyhow::Result<()> {
    wait_for(&format!("{css} on {url}"), T, || async {
        b.goto(url).await.ok()?;
        b.find(Locator::Css(css)).await.ok().map(|_| ())
    })
    .await
}

async fn sign_in(
    b: &Client,
    base: &str,
    fields: &[(&str, &str)],
    button: &str,
) -> anyhow::Result<()> {
    b.goto(&format!("{base}/console/login")).await?;
    for (id, value) in fields {
        b.find(Locator::Id(id)).await?.send_keys(value).await?;
    }
    b.find(Locator::Id(button)).await?.click().await?;
    // The click returns before the form's navigation ends: wait until the
    // browser has left the login page (every sign-in here succeeds).
    wait_for("the page after signing in", T, || async {
        path(b).await.ok().filter(|p| p != "/console/login")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_headless_chromium() -> anyhow::Result<()> {
    let d = driver().await?;
    let e = start().await?;
    let b = chromium(&d).await?;
    let result = walk(&b, &e).await;
    let _ = b.close().await;
    result
}

async fn walk(b: &Client, e: &Env) -> anyhow::Result<()> {
    let base = &e.base;
    let tr = e.dev.id.to_string();
    let mut shots = Shots::new()?;

    // Any console page sends a stranger to the sign-in form.
    b.goto(&format!("{base}/console")).await?;
    assert_eq!(path(b).await?, "/console/login");
    shots.take(b, "login").await?;

    // Sign in with the admin token: the cluster page.
    sign_in(b, base, &[("token", &e.token)], "sign-in").await?;
    assert_eq!(path(b).await?, "/console/cluster");
    assert_eq!(text(b, "#leader").await?, "node 1");
    assert_eq!(text(b, "#health").await?, "ready");
    assert!(text(b, "#hosts").await?.contains(respawn_config::DEV_HOST));
    shots.take(b, "cluster").await?;

    // A placement made through /dsm, found from the list, FULFILLED on its page.
    let p = e.c.backend.place(DEV_FLEET, &["alice", "bob"]).await?;
    e.c.backend.wait_status(&p, "FULFILLED", T).await?;
    b.find(Locator::LinkText("Placements"))
        .await?
        .click()
        .await?;
    wait_path(b, "/console/placements").await?;
    shots.take(b, "placements").await?;
    b.find(Locator::Css(&format!("a[href='/console/placements/{p}']")))
        .await?
        .click()
        .await?;
    wait_path(b, &format!("/console/placements/{p}")).await?;
    assert_eq!(text(b, "#placement-status").await?, "FULFILLED");
    assert!(text(b, "#players").await?.contains("alice"));
    assert!(text(b, "#timeline").await?.contains("placement FULFILLED"));
    shots.take(b, "placement").await?;
    // Its DS process, one click away.
    b.find(Locator::Id("session-process"))
        .await?
        .click()
        .await?;
    wait_for("the DS process page", T, || async {
        path(b)
            .await
            .ok()
            .filter(|p| p.starts_with("/console/processes/"))
    })
    .await?;
    assert!(text(b, "#process-logs").await?.contains("stdout.log"));
    assert!(text(b, "#sessions").await?.contains(&p));
    // Its logs: the tail of stdout.log has the line the sample DS printed.
    assert!(text(b, "#log-files").await?.contains("stdout.log"));
    assert!(text(b, "#log-tail").await?.contains("process ready"));
    shots.take(b, "process").await?;

    // The player's sessions.
    b.goto(&format!("{base}/console/players?player=alice"))
        .await?;
    assert!(text(b, "#player-sessions").await?.contains(&p));

    // The fleet page charts its utilization as SVG.
    b.goto(&format!("{base}/console/fleets/{DEV_FLEET}"))
        .await?;
    b.find(Locator::Css("#chart-utilization svg")).await?;
    wait_element(
        b,
        &format!("{base}/console/fleets/{DEV_FLEET}"),
        "#chart-utilization svg circle",
    )
    .await?;
    assert_eq!(text(b, "#scaling-policy").await?, "fill");
    let host_state = format!("#host-state-{}", respawn_config::DEV_HOST);
    assert_eq!(text(b, &host_state).await?, "ACTIVE");
    // The desired count set by hand: the autoscaler takes over, and the
    // page shows its decision with the reason.
    let desired = b.find(Locator::Id("desired-processes")).await?;
    desired.clear().await?;
    desired.send_keys("1").await?;
    b.find(Locator::Id("desired-set")).await?.click().await?;
    wait_text(b, "#scaling-manual", "1").await?;
    let fleet_url = format!("{base}/console/fleets/{DEV_FLEET}");
    wait_for("the autoscaler's decision on the fleet page", T, || async {
        b.goto(&fleet_url).await.ok()?;
        let last = text(b, "#scaling-last").await.ok()?;
        last.contains("manual desired 1").then_some(())
    })
    .await?;
    assert_eq!(text(b, "#scaling-policy").await?, "autoscaled");
    shots.take(b, "fleet").await?;
    // Drain the host with its button (its process holds alice's session:
    // DRAINING), then undrain it: ACTIVE again.
    b.find(Locator::Id(&format!("drain-{}", respawn_config::DEV_HOST)))
        .await?
        .click()
        .await?;
    wait_for("the host draining", T, || async {
        let s = b
            .find(Locator::Css(&host_state))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (s == "DRAINING" || s == "DRAINED").then_some(())
    })
    .await?;
    shots.take(b, "fleet-host-draining").await?;
    b.find(Locator::Id(&format!(
        "undrain-{}",
        respawn_config::DEV_HOST
    )))
    .await?
    .click()
    .await?;
    wait_text(b, &host_state, "ACTIVE").await?;
    b.find(Locator::Id("desired-clear")).await?.click().await?;
    wait_text(b, "#scaling-manual", "no").await?;

    // After a series of invokes, the VS page's QPS chart has points.
    for _ in 0..20 {
        let a = e.c.backend.invoke("GET", "api/hello", &[], vec![]).await?;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let vs_url = format!("{base}/console/virtual_servers/{tr}/api");
    wait_element(b, &vs_url, "#chart-qps svg circle").await?;
    // The sampled rate is above zero: the caption says the latest value.
    wait_for("a QPS point above zero", T, || async {
        b.goto(&vs_url).await.ok()?;
        let caption = text(b, "#chart-qps figcaption").await.ok()?;
        let qps: f64 = caption
            .strip_prefix("calls: ")?
            .split(' ')
            .next()?
            .parse()
            .ok()?;
        (qps > 0.0).then_some(())
    })
    .await?;
    assert!(!text(b, "#chart-rtt-histogram figcaption")
        .await?
        .starts_with("0 "));
    b.find(Locator::Css("#chart-rtt-histogram svg rect"))
        .await?;
    assert_eq!(text(b, "#vs-status").await?, "RUNNING");
    shots.take(b, "virtual-server").await?;

    // Stop and start it from its page.
    b.find(Locator::Id("vs-stop")).await?.click().await?;
    wait_text(b, "#vs-desired", "STOPPED").await?;
    b.find(Locator::Id("vs-start")).await?.click().await?;
    wait_text(b, "#vs-desired", "RUNNING").await?;

    // A POST without the CSRF token is refused, even with the session cookie.
    let status = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {method: 'POST', credentials: 'same-origin',
                   headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: ''})
               .then(r => done(r.status), () => done(0));",
            vec![serde_json::json!(format!("{vs_url}/stop"))],
        )
        .await?;
    assert_eq!(status, serde_json::json!(403));
    b.goto(&vs_url).await?;
    assert_eq!(text(b, "#vs-desired").await?, "RUNNING");

    // The log view's filter form is a plain GET: submitting it puts the
    // filters in the address.
    let logs_url = format!("{vs_url}/logs");
    b.goto(&logs_url).await?;
    b.find(Locator::Id("log-q"))
        .await?
        .send_keys("hello")
        .await?;
    b.find(Locator::Id("log-filter")).await?.click().await?;
    wait_for("the filtered log page", T, || async {
        let u = b.current_url().await.ok()?;
        u.query()
            .is_some_and(|q| q.contains("q=hello"))
            .then_some(())
    })
    .await?;
    text(b, "#console-log").await?;
    shots.take(b, "vs-logs").await?;

    // Browser access: the VS answers the operator's browser (Invoker:
    // console), and its page is sandboxed: a script in it cannot read
    // console pages with the operator's session.
    b.goto(&format!("{vs_url}/open")).await?;
    wait_for("the VS's own page", T, || async {
        let p = path(b).await.ok()?;
        p.starts_with(&format!("/console/browse/{tr}/api/"))
            .then_some(())
    })
    .await?;
    let here = b.current_url().await?;
    b.goto(&format!("{}hello", here.as_str())).await?;
    wait_for("the VS's answer to a console invoker", T, || async {
        let body = b.source().await.ok()?;
        body.contains("\"invoker\":\"console\"").then_some(())
    })
    .await?;
    shots.take(b, "vs-browse").await?;
    let read = b
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch('/console/cluster', {credentials: 'include'})
               .then(r => r.text()).then(t => done(t.includes('leader') ? 'read' : 'no session'), () => done('blocked'));",
            vec![],
        )
        .await?;
    assert_ne!(
        read,
        serde_json::json!("read"),
        "a VS page read a console page"
    );
    b.goto(&vs_url).await?;

    // Sign out: back to the login page, and the pages are closed again.
    b.find(Locator::Id("sign-out")).await?.click().await?;
    // The click returns before the form's navigation ends: wait for it.
    wait_for("the login page after sign-out", T, || async {
        path(b).await.ok().filter(|p| p == "/console/login")
    })
    .await?;
    b.goto(&format!("{base}/console/cluster")).await?;
    assert_eq!(path(b).await?, "/console/login");

    // A forged cookie goes back to the login page.
    // (Set from the page: a cookie with an admin-scope payload and a made-up signature.)
    b.execute(
        "document.cookie = 'respawn_console=eyJzY29wZSI6eyJraW5kIjoiYWRtaW4ifX0.00; path=/console';",
        vec![],
    )
    .await?;
    let cookies = b.execute("return document.cookie;", vec![]).await?;
    assert!(
        cookies.to_string().contains("respawn_console="),
        "{cookies}"
    );
    b.goto(&format!("{base}/console/cluster")).await?;
    assert_eq!(path(b).await?, "/console/login");

    // A title-region session cannot open another region's VS.
    sign_in(
        b,
        base,
        &[
            ("secret_id", e.dev.secret_id.as_str()),
            ("secret_key", &e.dev.secret_key),
        ],
        "sign-in-region",
    )
    .await?;
    assert_eq!(text(b, "#who").await?, format!("title region {tr}"));
    b.goto(&format!("{base}/console/virtual_servers")).await?;
    let list = text(b, "#virtual-servers").await?;
    assert!(
        list.contains("api") && !list.contains("secret-vs"),
        "{list}"
    );
    b.goto(&format!("{base}/console/virtual_servers/{OTHER}/secret-vs"))
        .await?;
    assert!(text(b, "#error").await?.contains("not found"));
    shots.take(b, "other-region-not-found").await?;
    b.find(Locator::Id("sign-out")).await.ok();
    Ok(())
}

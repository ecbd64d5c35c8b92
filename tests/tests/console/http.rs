//! The console's sign-in, scope and CSRF rules over plain HTTP.

use super::*;
use reqwest::redirect::Policy;
use respawn_config::DEV_FLEET;

pub(super) struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookie: Option<String>,
}

pub(super) struct Got {
    pub status: u16,
    pub location: String,
    pub set_cookie: String,
    /// The `Content-Security-Policy` header.
    pub csp: String,
    pub body: String,
}

impl Browser {
    pub(super) fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            base: base.to_string(),
            cookie: None,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Got> {
        let req = match &self.cookie {
            Some(c) => req.header("Cookie", format!("respawn_console={c}")),
            None => req,
        };
        let res = req.send().await?;
        let h = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (status, location, set_cookie, csp) = (
            res.status().as_u16(),
            h("location"),
            h("set-cookie"),
            h("content-security-policy"),
        );
        Ok(Got {
            status,
            location,
            set_cookie,
            csp,
            body: res.text().await?,
        })
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Got> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub(super) async fn post(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Got> {
        // A plain form body, as a browser sends it.
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await
    }

    /// Signs in with `form`; keeps the session cookie.
    pub(super) async fn sign_in(&mut self, form: &[(&str, &str)]) -> anyhow::Result<Got> {
        let g = self.post("/console/login", form).await?;
        if g.status != 303 {
            bail!("sign-in answered {}: {}", g.status, g.body);
        }
        let v = g
            .set_cookie
            .strip_prefix("respawn_console=")
            .and_then(|r| r.split(';').next())
            .context("session cookie")?;
        self.cookie = Some(v.to_string());
        Ok(g)
    }

    /// The CSRF token of the signed-in session, from a page's forms.
    pub(super) async fn csrf(&self) -> anyhow::Result<String> {
        let g = self.get("/console/fleets").await?;
        let i = g
            .body
            .find("name=\"csrf\" value=\"")
            .context("csrf field")?
            + 19;
        Ok(g.body[i..i + 64].to_string())
    }
}

/// Percent-encodes a form value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) async fn desired(e: &Env, tr: &str, vs: &str) -> String {
    let a =
        e.c.admin(
            "GET",
            &format!("/admin/title_regions/{tr}/virtual_servers/{vs}"),
            None,
        )
        .await
        .unwrap();
    a.json()["desired"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_scope_csrf_and_sign_out_over_http() -> anyhow::Result<()> {
    let e = start().await?;
    let dev_tr = e.dev.id.to_string();
    let mut admin = Browser::new(&e.base);

    // Without a session every page sends the browser to the login form.
    let g = admin.get("/console/cluster").await?;
    assert_eq!((g.status, g.location.as_str()), (303, "/console/login"));
    let g = admin.get("/console/login").await?;
    assert_eq!(g.status, 200);
    assert!(g.body.contains("name=\"token\"") && g.body.contains("name=\"secret_key\""));

    // Wrong credentials: no cookie.
    let g = admin.post("/console/login", &[("token", "wrong")]).await?;
    assert_eq!(g.status, 401);
    assert!(g.set_cookie.is_empty() && g.body.contains("wrong credentials"));
    let g = admin.post("/console/login", &[]).await?;
    assert_eq!(g.status, 400);

    // The admin token: a signed, HttpOnly, SameSite=Strict cookie with an expiry.
    let g = admin.sign_in(&[("token", &e.token)]).await?;
    assert_eq!(g.location, "/console/cluster");
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/console",
    ] {
        assert!(
            g.set_cookie.contains(attr),
            "{attr} missing: {}",
            g.set_cookie
        );
    }
    let g = admin.get("/console/cluster").await?;
    assert_eq!(g.status, 200);
    assert!(g.body.contains("id=\"leader\">node 1<"), "{}", g.body);
    assert!(g.body.contains(respawn_config::DEV_HOST));
    let g = admin.get("/console/virtual_servers").await?;
    assert!(g.body.contains(">api<") && g.body.contains(">secret-vs<"));

    // A forged cookie (signature changed) and an unsigned one go to the login page.
    let good = admin.cookie.clone().unwrap();
    let mut forged = good.clone();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(forged.len() - 1.., last);
    for bad in [forged, "e30.00".to_string()] {
        let b = Browser {
            cookie: Some(bad),
            ..Browser::new(&e.base)
        };
        let g = b.get("/console/cluster").await?;
        assert_eq!((g.status, g.location.as_str()), (303, "/console/login"));
    }

    // A change without the CSRF token (or with a wrong one) is refused and changes nothing.
    let stop = format!("/console/virtual_servers/{dev_tr}/api/stop");
    let g = admin.post(&stop, &[]).await?;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("CSRF"));
    let g = admin.post(&stop, &[("csrf", &"0".repeat(64))]).await?;
    assert_eq!(g.status, 403);
    assert_eq!(desired(&e, &dev_tr, "api").await, "RUNNING");
    // With it, the VS stops; then starts again.
    let csrf = admin.csrf().await?;
    let g = admin.post(&stop, &[("csrf", &csrf)]).await?;
    assert_eq!(
        (g.status, g.location.as_str()),
        (303, &*format!("/console/virtual_servers/{dev_tr}/api"))
    );
    assert_eq!(desired(&e, &dev_tr, "api").await, "STOPPED");
    let start = format!("/console/virtual_servers/{dev_tr}/api/start");
    assert_eq!(admin.post(&start, &[("csrf", &csrf)]).await?.status, 303);
    assert_eq!(desired(&e, &dev_tr, "api").await, "RUNNING");

    // A placement in the dev title region.
    let p = e.c.backend.place(DEV_FLEET, &["player-1"]).await?;
    e.c.backend.wait_status(&p, "FULFILLED", T).await?;
    let g = admin.get(&format!("/console/placements/{p}")).await?;
    assert!(g
        .body
        .contains("id=\"placement-status\" class=\"status FULFILLED\">FULFILLED"));
    let g = admin.get("/console/players?player=player-1").await?;
    assert!(g.body.contains(&p));

    // A title-region session sees its own region only; another region's
    // records answer 404, exactly like missing ones.
    let mut dev = Browser::new(&e.base);
    dev.sign_in(&[
        ("secret_id", e.dev.secret_id.as_str()),
        ("secret_key", &e.dev.secret_key),
    ])
    .await?;
    assert_eq!(
        dev.get(&format!("/console/virtual_servers/{dev_tr}/api"))
            .await?
            .status,
        200
    );
    let g = dev
        .get(&format!("/console/virtual_servers/{OTHER}/secret-vs"))
        .await?;
    assert_eq!(g.status, 404);
    let missing = dev
        .get(&format!("/console/virtual_servers/{OTHER}/no-such-vs"))
        .await?;
    assert_eq!(missing.status, 404);
    let dev_csrf = dev.csrf().await?;
    let g = dev
        .post(
            &format!("/console/virtual_servers/{OTHER}/secret-vs/stop"),
            &[("csrf", &dev_csrf)],
        )
        .await?;
    assert_eq!(g.status, 404);
    assert_eq!(desired(&e, OTHER, "secret-vs").await, "RUNNING");
    let g = dev.get("/console/virtual_servers").await?;
    assert!(g.body.contains(">api<") && !g.body.contains("secret-vs"));

    let mut other = Browser::new(&e.base);
    other
        .sign_in(&[
            ("secret_id", e.other.secret_id.as_str()),
            ("secret_key", &e.other.secret_key),
        ])
        .await?;
    assert_eq!(
        other.get(&format!("/console/placements/{p}")).await?.status,
        404
    );
    assert!(!other.get("/console/placements").await?.body.contains(&p));
    assert!(!other
        .get("/console/players?player=player-1")
        .await?
        .body
        .contains(&p));
    assert_eq!(
        other
            .get(&format!("/console/fleets/{DEV_FLEET}"))
            .await?
            .status,
        404
    );
    assert!(!other
        .get("/console/cluster")
        .await?
        .body
        .contains(respawn_config::DEV_HOST));
    // A session cannot be stretched to another region by its CSRF token either.
    let g = other
        .post(
            &format!("/console/virtual_servers/{dev_tr}/api/stop"),
            &[("csrf", &dev_csrf)],
        )
        .await?;
    assert_eq!(g.status, 404);

    // Sign-out needs the token too, then clears the cookie.
    assert_eq!(admin.post("/console/logout", &[]).await?.status, 403);
    let g = admin.post("/console/logout", &[("csrf", &csrf)]).await?;
    assert_eq!((g.status, g.location.as_str()), (303, "/console/login"));
    assert!(g.set_cookie.starts_with("respawn_console=;") && g.set_cookie.contains("Max-Age=0"));
    Ok(())
}

/// The three sessions the scope tests use, each with its CSRF token: the
/// admin token's, the dev title region's and the other title region's.
pub(super) struct SignedIn {
    pub admin: Browser,
    pub csrf: String,
    pub dev: Browser,
    pub dev_csrf: String,
    pub other: Browser,
    pub other_csrf: String,
}

impl SignedIn {
    pub(super) async fn all(e: &Env) -> anyhow::Result<SignedIn> {
        let mut admin = Browser::new(&e.base);
        admin.sign_in(&[("token", &e.token)]).await?;
        let mut dev = Browser::new(&e.base);
        dev.sign_in(&[
            ("secret_id", e.dev.secret_id.as_str()),
            ("secret_key", &e.dev.secret_key),
        ])
        .await?;
        let mut other = Browser::new(&e.base);
        other
            .sign_in(&[
                ("secret_id", e.other.secret_id.as_str()),
                ("secret_key", &e.other.secret_key),
            ])
            .await?;
        Ok(SignedIn {
            csrf: admin.csrf().await?,
            dev_csrf: dev.csrf().await?,
            other_csrf: other.csrf().await?,
            admin,
            dev,
            other,
        })
    }
}

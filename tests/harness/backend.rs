//! A game backend's HTTP client for the edge: signs server tickets, calls
//! the DSM API, invokes virtual servers and calls the admin API.

use crate::support::wait_for;
use anyhow::{bail, Context};
use respawn_types::ticket::server::sign_ticket;
use respawn_types::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A game backend calling the edge with a title region's server key.
#[derive(Clone)]
pub struct Backend {
    pub base: String,
    pub title_id: String,
    pub title_region_id: String,
    pub secret_id: String,
    pub secret_key: String,
    client: reqwest::Client,
}

impl Backend {
    pub fn new(base: impl Into<String>, r: &TitleRegion) -> Backend {
        Backend {
            base: base.into(),
            title_id: r.title_id.to_string(),
            title_region_id: r.id.to_string(),
            secret_id: r.secret_id.to_string(),
            secret_key: r.secret_key.clone(),
            // No idle pooling: a server may close a connection after an
            // error answer (413 with the body unread), and a pooled client
            // would send its next request into the closed connection.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()
                .expect("HTTP client"),
        }
    }

    /// POSTs `body` to `path` with valid credentials; returns status and JSON.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.post_with(path, body.to_string(), &self.ticket()).await
    }

    /// A ServerTicket for now.
    pub fn ticket(&self) -> String {
        sign_ticket(
            &self.secret_key,
            &self.title_id,
            &self.title_region_id,
            &self.secret_id,
            now_millis() as i64 / 1000,
        )
    }

    /// POSTs a raw body with a given ticket.
    pub async fn post_with(
        &self,
        path: &str,
        body: String,
        ticket: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let res = self
            .client
            .post(format!("{}{}", self.base, path))
            .header("TitleId", &self.title_id)
            .header("TitleRegionId", &self.title_region_id)
            .header("SecretId", &self.secret_id)
            .header("ServerTicket", ticket)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// POSTs and insists on 200.
    pub async fn ok(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, v) = self.post(path, body).await?;
        if status != 200 {
            bail!("{path} answered {status}: {v}");
        }
        Ok(v)
    }

    /// RequestBattleSessionID + StartBattleSessionPlacement; returns the placement id.
    pub async fn place(&self, fleet: &str, players: &[&str]) -> anyhow::Result<String> {
        let v = self.place_view(fleet, players).await?;
        Ok(v["placement_id"]
            .as_str()
            .context("placement_id")?
            .to_string())
    }

    /// [`Backend::place`], returning the placement as the start answered it.
    pub async fn place_view(&self, fleet: &str, players: &[&str]) -> anyhow::Result<Value> {
        let v = self.ok("/dsm/request_battle_session_id", json!({})).await?;
        let bs = v["battle_session_id"]
            .as_str()
            .context("battle_session_id")?
            .to_string();
        let players: Vec<Value> = players.iter().map(|p| json!({"player_id": p})).collect();
        let v = self
            .ok(
                "/dsm/start_battle_session_placement",
                json!({"fleet_id": fleet, "battle_session_id": bs, "max_players": 8, "players": players}),
            )
            .await?;
        Ok(v["placement"].clone())
    }

    pub async fn describe(&self, placement: &str) -> anyhow::Result<Value> {
        Ok(self
            .ok(
                "/dsm/describe_battle_session_placement",
                json!({"placement_id": placement}),
            )
            .await?["placement"]
            .clone())
    }

    /// Waits until the placement reaches `status`; returns its view.
    pub async fn wait_status(
        &self,
        placement: &str,
        status: &str,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        wait_for(
            &format!("placement {placement} to be {status}"),
            deadline,
            || async {
                let v = self.describe(placement).await.ok()?;
                (v["status"] == status).then_some(v)
            },
        )
        .await
    }
}

/// An HTTP answer, status, headers and body as text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Backend {
    fn signed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let ticket = self.ticket();
        req.header("TitleId", &self.title_id)
            .header("TitleRegionId", &self.title_region_id)
            .header("SecretId", &self.secret_id)
            .header("ServerTicket", ticket)
    }

    /// Invokes `/virtualserver/invoke/{vs}{path}` as the game backend, with
    /// extra `headers`.
    pub async fn invoke(
        &self,
        method: &str,
        vs_and_path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}/virtualserver/invoke/{vs_and_path}", self.base);
        let mut req = self
            .client
            .request(method.parse()?, url)
            .timeout(Duration::from_secs(30))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(self.signed(req).send().await?).await
    }

    /// Invokes `/virtualserver/client/invoke/{vs}{path}` as a game client
    /// holding `player_ticket`.
    pub async fn invoke_as_client(
        &self,
        vs_and_path: &str,
        player_ticket: &str,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}/virtualserver/client/invoke/{vs_and_path}", self.base);
        let res = self
            .client
            .get(url)
            .header("TitleId", &self.title_id)
            .header("TitleRegionId", &self.title_region_id)
            .header("PlayerTicket", player_ticket)
            .timeout(Duration::from_secs(30))
            .send()
            .await?;
        answer(res).await
    }

    /// Calls the admin API with the admin token.
    pub async fn admin(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .client
            .request(method.parse()?, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await?).await
    }
}

async fn answer(res: reqwest::Response) -> anyhow::Result<Answer> {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.text().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

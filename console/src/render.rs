//! The console's templates (minijinja, HTML auto-escaped) and static
//! assets, all compiled into the binary.

use crate::ConsoleError;
use minijinja::Environment;
use serde::Serialize;
use std::sync::OnceLock;

const TEMPLATES: [(&str, &str); 13] = [
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("cluster.html", include_str!("../templates/cluster.html")),
    ("fleets.html", include_str!("../templates/fleets.html")),
    ("fleet.html", include_str!("../templates/fleet.html")),
    (
        "placements.html",
        include_str!("../templates/placements.html"),
    ),
    (
        "placement.html",
        include_str!("../templates/placement.html"),
    ),
    ("players.html", include_str!("../templates/players.html")),
    ("process.html", include_str!("../templates/process.html")),
    ("vs_list.html", include_str!("../templates/vs_list.html")),
    ("vs.html", include_str!("../templates/vs.html")),
    ("vs_logs.html", include_str!("../templates/vs_logs.html")),
];

fn env() -> Result<&'static Environment<'static>, ConsoleError> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source).map_err(|e| e.to_string())?;
        }
        env.add_filter("time", |ms: u64| crate::views::time(ms));
        env.add_filter("truncate", truncate);
        Ok(env)
    })
    .as_ref()
    .map_err(|e| {
        ConsoleError::Template(minijinja::Error::new(
            minijinja::ErrorKind::TemplateNotFound,
            e.clone(),
        ))
    })
}

/// The first `n` characters of `s`, and "…" if there were more (the
/// trigger log's answers; minijinja has no `truncate` of its own).
fn truncate(s: String, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Renders template `name` with `ctx`.
pub fn render<S: Serialize>(name: &str, ctx: S) -> Result<String, ConsoleError> {
    Ok(env()?.get_template(name)?.render(ctx)?)
}

/// A static asset by file name: its content type and body.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "style.css" => Some((
            "text/css; charset=utf-8",
            include_str!("../assets/style.css"),
        )),
        "refresh.js" => Some((
            "text/javascript; charset=utf-8",
            include_str!("../assets/refresh.js"),
        )),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_parses_and_the_login_page_renders_escaped() {
        let html = render(
            "login.html",
            json!({"title": "Sign in", "error": "<b>no</b>", "node_id": 1, "now": "x"}),
        )
        .unwrap();
        assert!(html.contains("name=\"token\""));
        assert!(html.contains("&lt;b&gt;no") && !html.contains("<b>no"));
        assert!(!html.contains("id=\"sign-out\""));
        assert!(asset("style.css").is_some() && asset("../secret").is_none());
        assert_eq!(truncate("héllo".into(), 2), "hé…");
        assert_eq!(truncate("hi".into(), 2), "hi");
    }
}

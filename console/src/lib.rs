//! The Respawn web console (`/console` on every server node), the parts
//! that need no node: signed stateless sessions and CSRF tokens
//! ([`session`]), the bounded time series the charts draw from
//! ([`series`]) and the metrics recorder that feeds them ([`recorder`]),
//! SVG charts drawn with plotters ([`charts`]), the pages' view models built
//! from the replicated [`respawn_state::ClusterState`] ([`views`]) and the
//! minijinja templates that render them ([`render`]), every asset embedded
//! in the binary. The node's `console` module serves them over axum.

pub mod charts;
pub mod merge;
pub mod recorder;
pub mod render;
pub mod sample;
pub mod series;
pub mod session;
pub mod views;

/// What can go wrong in the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A template failed to render (a bug in a template or its data).
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// A session cookie or CSRF token is malformed, forged or expired.
    #[error("session: {0}")]
    Session(&'static str),
}

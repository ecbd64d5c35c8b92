//! Signing in and out of the console, and the session every page checks.
//!
//! `POST /console/login` takes the admin token (field `token`: full scope)
//! or a title region's `secret_id` and `secret_key` (that region only) and
//! sets a signed, expiring, `HttpOnly`, `SameSite=Strict` cookie
//! (`respawn_console::session`). A page without a valid session redirects
//! to the login form. Forms that change something carry the session's
//! CSRF token ([`check_csrf`]).

use super::{html, ConsoleState, PageError};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use respawn_console::render;
use respawn_console::session::{self, key_tag, same, Scope, Session};
use respawn_types::TitleRegionId;
use serde::Deserialize;

/// The signed-in person of a request.
pub struct Me {
    pub session: Session,
    /// `None`: every title region (admin); `Some`: that one only.
    pub region: Option<TitleRegionId>,
    pub csrf: String,
}

impl Me {
    /// Who is signed in, for the page header.
    pub fn who(&self) -> String {
        match &self.region {
            None => "admin".into(),
            Some(tr) => format!("title region {tr}"),
        }
    }

    /// The scope the view functions filter with.
    pub fn scope(&self) -> respawn_console::views::Scope<'_> {
        respawn_console::views::Scope(self.region.as_ref())
    }
}

fn now_secs() -> u64 {
    respawn_types::now_millis() / 1000
}

impl FromRequestParts<ConsoleState> for Me {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &ConsoleState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/console/login").into_response();
        let value = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| session::cookie_value(h, session::COOKIE))
            .ok_or_else(to_login)?;
        let s = c.signer.decode(value, now_secs()).map_err(|_| to_login())?;
        let region = match &s.scope {
            Scope::Admin => None,
            Scope::Region {
                title_region_id,
                key_tag: tag,
            } => {
                // The region must still exist with the key the session began
                // with (keys change rarely: this node's state is enough).
                let tr = TitleRegionId::new_unchecked(title_region_id.clone());
                let valid = c.edge.server.cluster.consensus.read(|st| {
                    st.title_regions
                        .get(&tr)
                        .is_some_and(|r| same(&key_tag(&r.secret_key), tag))
                });
                if !valid {
                    return Err(to_login());
                }
                Some(tr)
            }
        };
        let csrf = c.signer.csrf(&s);
        Ok(Me {
            session: s,
            region,
            csrf,
        })
    }
}

/// A form that changes something: its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// Refuses a change whose form lacks the session's CSRF token.
pub fn check_csrf(
    c: &ConsoleState,
    me: &Me,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<(), PageError> {
    match form {
        Ok(Form(f)) if c.signer.check_csrf(&me.session, &f.csrf) => Ok(()),
        _ => Err(PageError::Csrf),
    }
}

/// Refuses a change whose form's `csrf` field is not the session's token
/// (for forms with more fields than [`CsrfForm`]).
pub fn check_token(c: &ConsoleState, me: &Me, token: &str) -> Result<(), PageError> {
    if c.signer.check_csrf(&me.session, token) {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    match render::render(
        "login.html",
        minijinja::context! { title => "Sign in", error, now => super::now_text() },
    ) {
        Ok(body) => html(status, body),
        Err(e) => PageError::Render(e).into_response(),
    }
}

/// `GET /console/login`: the sign-in forms.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// The sign-in form's fields: `token`, or `secret_id` and `secret_key`.
#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub secret_id: String,
    #[serde(default)]
    pub secret_key: String,
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// `POST /console/login`: checks the credentials and sets the session cookie.
pub async fn login(
    State(c): State<ConsoleState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return login_page(StatusCode::BAD_REQUEST, Some("the form could not be read"));
    };
    let scope = if !f.token.is_empty() {
        same(&f.token, &c.edge.admin_token).then_some(Scope::Admin)
    } else if !f.secret_id.is_empty() && !f.secret_key.is_empty() {
        c.edge.server.cluster.consensus.read(|st| {
            st.title_regions
                .values()
                .find(|r| r.secret_id.as_str() == f.secret_id)
                .filter(|r| same(&r.secret_key, &f.secret_key))
                .map(|r| Scope::Region {
                    title_region_id: r.id.to_string(),
                    key_tag: key_tag(&r.secret_key),
                })
        })
    } else {
        return login_page(
            StatusCode::BAD_REQUEST,
            Some("give the admin token, or a SecretId and its SecretKey"),
        );
    };
    let Some(scope) = scope else {
        return login_page(StatusCode::UNAUTHORIZED, Some("wrong credentials"));
    };
    let s = c.signer.issue(scope, now_secs());
    let cookie = session::set_cookie(&c.signer.encode(&s), secure(&headers));
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/cluster"),
    )
        .into_response()
}

/// `POST /console/logout` (with the CSRF token): clears the cookie.
pub async fn logout(
    State(c): State<ConsoleState>,
    me: Me,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, PageError> {
    check_csrf(&c, &me, form)?;
    Ok((
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/console/login"),
    )
        .into_response())
}

//! Authentication: the API's bearer token, UI login sessions in the
//! store, CSRF tokens on every form. See the module docs of [`super`].

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use goflow_store::WebSession;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{ApiError, PageError};
use super::{views, WebError, WebState};

/// The cookie carrying the session id.
pub(crate) const SESSION_COOKIE: &str = "goflow_session";
/// The cookie of the login form's double-submit CSRF token.
const LOGIN_COOKIE: &str = "goflow_login";
/// The header carrying the CSRF token of a session's API calls.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// 32 random bytes from the OS, as 64 hex digits.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something to go on without.
    if let Err(e) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random source failed: {e}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// A cookie for the base path (`Path=/goflow`, or `/` at the root).
fn set_cookie(state: &WebState, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let path = state.urls().cookie_path();
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if state.config().secure_cookies {
        c.push_str("; Secure");
    }
    // Built from hex tokens, a checked base path and fixed text only.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The live session the request's cookie names, if any.
async fn session(state: &WebState, headers: &HeaderMap) -> Result<Option<WebSession>, WebError> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    Ok(state.store().session(&id, Utc::now()).await?)
}

/// Who made an API request.
#[derive(Clone, Debug)]
pub(crate) enum Principal {
    /// The holder of the API token.
    Token,
    /// A logged-in UI user.
    Session(WebSession),
}

impl Principal {
    /// Who, for the log.
    pub(crate) fn name(&self) -> &str {
        match self {
            Principal::Token => "api-token",
            Principal::Session(s) => &s.username,
        }
    }
}

async fn authenticate(
    state: &WebState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Principal, WebError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        return match token {
            Some(t) if ct_eq(t, &state.api_token().token) => Ok(Principal::Token),
            Some(_) => Err(WebError::Unauthorized("invalid API token".to_owned())),
            None => Err(WebError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".to_owned(),
            )),
        };
    }
    let Some(s) = session(state, headers).await? else {
        return Err(WebError::Unauthorized(
            "authentication required: send `Authorization: Bearer <token>`".to_owned(),
        ));
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct_eq(sent, &s.csrf_token) {
            return Err(WebError::Forbidden(
                "a session's API changes need its CSRF token in the X-CSRF-Token header".to_owned(),
            ));
        }
    }
    Ok(Principal::Session(s))
}

/// Middleware of the API and `/metrics`: a bearer token, or a session
/// (with its CSRF token for changes); else `401` JSON.
pub(crate) async fn api_auth(
    State(state): State<WebState>,
    mut req: Request,
    next: Next,
) -> Response {
    let (headers, method) = (req.headers().clone(), req.method().clone());
    match authenticate(&state, &headers, &method).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

/// Middleware of the UI pages: a session, else the login page (for a
/// page) or `401` (for a form).
pub(crate) async fn ui_auth(
    State(state): State<WebState>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers().clone();
    match session(&state, &headers).await {
        Ok(Some(s)) => {
            req.extensions_mut().insert(s);
            next.run(req).await
        }
        Ok(None) if req.method() == Method::GET || req.method() == Method::HEAD => {
            // Under a base path, the router nested here saw the path
            // without it.
            let urls = state.urls();
            let here = urls.to(req.uri().path_and_query().map_or("/", |p| p.as_str()));
            Redirect::to(&urls.login_then(&here)).into_response()
        }
        Ok(None) => PageError(WebError::Unauthorized(
            "your session has expired; log in again".to_owned(),
        ))
        .into_response(),
        Err(e) => PageError(e).into_response(),
    }
}

/// A form posted from a UI page, checked against the session's CSRF
/// token before the handler sees it. Forms without the token, or with
/// another, are refused with `403`.
pub(crate) struct UiForm<T>(pub T, pub WebSession);

/// A form that carries a CSRF token.
pub(crate) trait CsrfForm {
    /// The token the form carried (empty if none).
    fn csrf(&self) -> &str;
}

impl<T, S> FromRequest<S> for UiForm<T>
where
    T: DeserializeOwned + CsrfForm,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let session = req
            .extensions()
            .get::<WebSession>()
            .cloned()
            .ok_or_else(|| WebError::Unauthorized("log in first".to_owned()))?;
        let Form(form) = Form::<T>::from_request(req, state)
            .await
            .map_err(WebError::from)?;
        if !ct_eq(form.csrf(), &session.csrf_token) {
            return Err(PageError(WebError::Forbidden(
                "the form's CSRF token is missing or stale: reload the page and try again"
                    .to_owned(),
            )));
        }
        Ok(UiForm(form, session))
    }
}

/// A form's body, rejected as a [`PageError`] when malformed.
pub(crate) struct PageForm<T>(pub T);

impl<T, S> FromRequest<S> for PageForm<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Form(form) = Form::<T>::from_request(req, state)
            .await
            .map_err(WebError::from)?;
        Ok(PageForm(form))
    }
}

/// Where to go after a form or a login: `next` when it is a path of this
/// UI (under `base`: never another site, nor another application of the
/// same site), else `default`.
pub(crate) fn safe_next(next: Option<&str>, base: &str, default: &str) -> String {
    match next {
        Some(n) if is_ui_path(n, base) => n.to_owned(),
        _ => default.to_owned(),
    }
}

/// Whether `n` is a path under `base`: visible ASCII (as the UI's
/// percent-encoded URLs are), one leading `/` (`//host` is another
/// site), no `\` (which browsers read as `/`), and no `.` or `..`
/// segment, even percent-encoded, to climb out of the base.
fn is_ui_path(n: &str, base: &str) -> bool {
    if !n.bytes().all(|b| b.is_ascii_graphic())
        || !n.starts_with('/')
        || n.starts_with("//")
        || n.contains('\\')
    {
        return false;
    }
    let under = n
        .strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'));
    let path = n.split(['?', '#']).next().unwrap_or("");
    let climbs = path.split('/').any(|segment| {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        matches!(decoded.as_ref(), "." | "..")
    });
    under && !climbs
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: `next` when it is a UI path, else the
/// DAG list.
fn login_next(state: &WebState, next: Option<&str>) -> String {
    let urls = state.urls();
    safe_next(next, urls.base(), &urls.dags())
}

/// `GET <base>/login`: the form, with a fresh double-submit CSRF cookie.
pub(crate) async fn login_page(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let next = login_next(&state, q.next.as_deref());
    if session(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    Ok(login_form(&state, &next, None))
}

/// The login form, answered with `error`'s status and message when the
/// last try was refused.
fn login_form(state: &WebState, next: &str, error: Option<WebError>) -> Response {
    let csrf = random_token();
    let status = error.as_ref().map_or(StatusCode::OK, WebError::status);
    let message = error.as_ref().map(WebError::public_message);
    let mut res = (
        status,
        views::login(
            state.urls(),
            &state.config().ui_username,
            &csrf,
            next,
            message.as_deref(),
        ),
    )
        .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &csrf, Some(3600)),
    );
    res
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST <base>/login`: checks the login form's CSRF token and the
/// password, then opens a session.
pub(crate) async fn login(
    State(state): State<WebState>,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> Result<Response, PageError> {
    let next = login_next(&state, form.next.as_deref());
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !ct_eq(&form.csrf, &expected) {
        return Ok(login_form(
            &state,
            &next,
            Some(WebError::Forbidden(
                "The login form expired: try again.".to_owned(),
            )),
        ));
    }
    let user_ok = ct_eq(form.username.trim(), &state.config().ui_username);
    let password_ok = ct_eq(&form.password, state.ui_password());
    if !(user_ok && password_ok) {
        tracing::warn!(user = %form.username, "failed UI login");
        // Slows down guessing.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        return Ok(login_form(
            &state,
            &next,
            Some(WebError::Unauthorized(
                "Wrong user name or password.".to_owned(),
            )),
        ));
    }
    let now = Utc::now();
    state.store().delete_expired_sessions(now).await?;
    let ttl = chrono::Duration::from_std(state.config().session_ttl)
        .unwrap_or_else(|_| chrono::Duration::hours(12));
    let s = WebSession {
        id: random_token(),
        csrf_token: random_token(),
        username: state.config().ui_username.clone(),
        created_date: now,
        expires_date: now + ttl,
    };
    state.store().create_session(&s).await?;
    tracing::info!(user = %s.username, "UI login");
    let mut res = Redirect::to(&next).into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &s.id, Some(ttl.num_seconds())),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", Some(0)),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

impl CsrfForm for LogoutForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST <base>/logout`: ends the session.
pub(crate) async fn logout(
    State(state): State<WebState>,
    UiForm(_, session): UiForm<LogoutForm>,
) -> Result<Response, PageError> {
    state.store().delete_session(&session.id).await?;
    let mut res = Redirect::to(&state.urls().login()).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", Some(0)),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
        assert!(!ct_eq("", "a"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; goflow_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn redirects_stay_on_this_site() {
        let next = |n: &str| safe_next(Some(n), "", "/");
        assert_eq!(next("/dags/x?page=2"), "/dags/x?page=2");
        assert_eq!(next("//evil.example"), "/");
        assert_eq!(next("https://evil.example"), "/");
        assert_eq!(next("/\\evil.example"), "/");
        assert_eq!(next("/dags\n/x"), "/", "no control characters");
        assert_eq!(next("/dags/é"), "/", "the UI's URLs are percent-encoded");
        assert_eq!(safe_next(None, "", "/dags"), "/dags");
    }

    #[test]
    fn redirects_stay_under_the_base_path() {
        let next = |n: &str| safe_next(Some(n), "/goflow", "/goflow/dags");
        assert_eq!(next("/goflow/dags/x?page=2"), "/goflow/dags/x?page=2");
        assert_eq!(next("/goflow"), "/goflow");
        assert_eq!(next("/goflow?x=1"), "/goflow?x=1");
        assert_eq!(next("/other-app"), "/goflow/dags");
        assert_eq!(next("/goflowish/x"), "/goflow/dags");
        assert_eq!(next("/goflow/../admin"), "/goflow/dags");
        assert_eq!(next("/goflow/%2e%2E/admin"), "/goflow/dags");
        assert_eq!(next("/goflow/./dags"), "/goflow/dags");
        assert_eq!(next("//goflow/x"), "/goflow/dags");
        // A `..` in the query is only data.
        assert_eq!(next("/goflow/dags?q=.."), "/goflow/dags?q=..");
    }
}

//! Bearer-token authentication for everything served over HTTP: where the token comes
//! from (`FLOTILLA_TOKEN`, or a `token` file generated in the data directory with mode
//! 0600), and the middleware that answers 401 to any request without it.
//!
//! The dashboard is opened in a browser, which cannot send a bearer header: `GET
//! /?token=…` with the right token opens a dashboard session. The browser never holds
//! the token: a session is two random values kept in memory (at most
//! [`MAX_SESSIONS`], the oldest forgotten first; all forgotten at restart):
//! - the session secret, in an HttpOnly, SameSite=Strict, `Path=/` cookie. Browsers
//!   send a host's cookies to every port of that host, so another local server may
//!   see it: it opens reads on the dashboard's routes only, never `/mcp` (neither as
//!   a cookie nor as a bearer token);
//! - the CSRF value, handed to the page once in the redirect's fragment
//!   (`/#csrf=…`, which browsers never send to a server); the page keeps it in its
//!   origin's storage and sends it as `X-Flotilla-Csrf`. A request that changes
//!   something (any method but GET/HEAD) and rests on the cookie needs it, and an
//!   `Origin` the guard has already checked: the cookie alone (a cross-site form, or
//!   a server that saw it) cannot control the fleet.
//!
//! The token itself is never logged; only the file's path is. Secrets are compared
//! in constant time. Responses to authenticated requests carry [`Authenticated`] (for
//! the connection budget in [`super::conn`]).

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The environment variable holding an explicit token.
pub const TOKEN_ENV: &str = "FLOTILLA_TOKEN";
/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// Random bytes in a generated token (256 bits, written as 64 hex digits).
const TOKEN_BYTES: usize = 32;
/// The shortest token accepted from `FLOTILLA_TOKEN` or a token file.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Dashboard sessions kept at once; opening one more forgets the oldest.
pub const MAX_SESSIONS: usize = 32;
/// The header the dashboard page sends its CSRF value in.
pub const CSRF_HEADER: &str = "x-flotilla-csrf";

/// Marks a response to a request that presented a valid credential.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

/// Why no token could be had; every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{TOKEN_ENV} is too short ({0} characters; at least {MIN_TOKEN_CHARS}): use a random one, e.g. `openssl rand -hex 32`"
    )]
    TooShort(usize),
    #[error(
        "{what} contains characters that cannot go in an HTTP header: use printable ASCII without spaces, e.g. `openssl rand -hex 32`"
    )]
    BadChars { what: String },
    #[error(
        "token file {} is unusable ({problem}); delete it to have a new token generated, or set {TOKEN_ENV}", path.display()
    )]
    BadFile { path: PathBuf, problem: String },
    #[error("cannot create the token file {}: {source}; set {TOKEN_ENV} instead", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no data directory to keep a token in (--ephemeral); set {TOKEN_ENV}")]
    NoPlace,
    #[error("cannot generate a random token: {0}; set {TOKEN_ENV} instead")]
    Random(String),
}

/// The secret every request must present as `Authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where a token from the data directory came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Read from an existing file.
    File(PathBuf),
    /// Generated now into this file.
    Generated(PathBuf),
}

impl Token {
    /// A token from a string, checked: long enough and valid in a header.
    pub fn new(value: &str, what: &str) -> Result<Self, TokenError> {
        let value = value.trim();
        if value.chars().count() < MIN_TOKEN_CHARS {
            return Err(TokenError::TooShort(value.chars().count()));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::BadChars {
                what: what.to_string(),
            });
        }
        Ok(Self(value.into()))
    }

    /// `FLOTILLA_TOKEN`, when set (an empty value counts as unset).
    pub fn from_env() -> Result<Option<Self>, TokenError> {
        match std::env::var(TOKEN_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::new(&v, TOKEN_ENV).map(Some),
            _ => Ok(None),
        }
    }

    /// The token clients must present: `env` (from [`Token::from_env`]) if set, else
    /// the one in the data directory's token file (generated there if missing).
    /// Logs where it is, never what it is.
    pub fn choose(env: Option<Token>, data_dir: Option<&Path>) -> Result<Self, TokenError> {
        if let Some(token) = env {
            tracing::info!("clients authenticate with the token in {TOKEN_ENV}");
            return Ok(token);
        }
        let dir = data_dir.ok_or(TokenError::NoPlace)?;
        let (token, source) = Self::load_or_generate(dir)?;
        match source {
            TokenSource::Generated(path) => tracing::info!(
                token_file = %path.display(),
                "generated a bearer token for clients; it is in the token file"
            ),
            TokenSource::File(path) => tracing::info!(
                token_file = %path.display(),
                "clients authenticate with the token in the token file"
            ),
        }
        Ok(token)
    }

    /// The token in `dir/token`, generated (random, mode 0600) if the file does not
    /// exist yet.
    pub fn load_or_generate(dir: &Path) -> Result<(Self, TokenSource), TokenError> {
        let path = dir.join(TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let token =
                    Self::new(&text, &format!("token file {}", path.display())).map_err(|e| {
                        TokenError::BadFile {
                            path: path.clone(),
                            problem: e.to_string(),
                        }
                    })?;
                if let Ok(meta) = std::fs::metadata(&path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(
                        token_file = %path.display(),
                        "the token file can be read by other users; run `chmod 600` on it"
                    );
                }
                Ok((token, TokenSource::File(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = Self::generate()?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|source| TokenError::Create {
                        path: path.clone(),
                        source,
                    })?;
                file.write_all(format!("{}\n", token.0).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|source| TokenError::Create {
                        path: path.clone(),
                        source,
                    })?;
                Ok((token, TokenSource::Generated(path)))
            }
            Err(e) => Err(TokenError::BadFile {
                path,
                problem: e.to_string(),
            }),
        }
    }

    fn generate() -> Result<Self, TokenError> {
        Ok(Self(random_hex()?.into()))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`. The comparison
    /// takes the same time wherever the first difference is.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|presented| self.matches(presented))
    }

    /// Whether `presented` is this token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        presented.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

/// [`TOKEN_BYTES`] random bytes as hex.
fn random_hex() -> Result<String, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two secrets are equal, in constant time.
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The credentials of an `Authorization: Bearer …` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// One dashboard session: the cookie's secret and the page's CSRF value.
struct Session {
    secret: String,
    csrf: String,
}

/// The token, the name of this listener's session cookie and the open sessions.
#[derive(Clone)]
pub struct Auth {
    pub token: Token,
    /// `flotilla_<port>`: cookies are not kept apart by port, so two fleets on one
    /// host each get their own.
    cookie: Arc<str>,
    sessions: Arc<Mutex<VecDeque<Session>>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("cookie", &self.cookie)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(token: Token, port: u16) -> Self {
        Self {
            token,
            cookie: format!("flotilla_{port}").into(),
            sessions: Arc::default(),
        }
    }

    /// The CSRF value of the session whose cookie the request carries.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let sessions = self.sessions.lock().ok()?;
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .filter(|(k, _)| *k == &*self.cookie)
            .find_map(|(_, v)| {
                sessions
                    .iter()
                    .find(|s| same(&s.secret, v))
                    .map(|s| s.csrf.clone())
            })
    }

    /// Open a session: its `Set-Cookie` value and its CSRF value.
    fn open_session(&self) -> Result<(String, String), TokenError> {
        let session = Session {
            secret: random_hex()?,
            csrf: random_hex()?,
        };
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie, session.secret
        );
        let csrf = session.csrf.clone();
        if let Ok(mut sessions) = self.sessions.lock() {
            if sessions.len() >= MAX_SESSIONS {
                sessions.pop_front();
            }
            sessions.push_back(session);
        }
        Ok((cookie, csrf))
    }
}

/// The value of `token=` in a query string.
fn query_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// Middleware: the bearer header anywhere; on the dashboard's routes also the session
/// cookie (changes only with an `Origin` and the session's CSRF value), and `GET
/// /?token=…` opens a session. Otherwise 401 with `WWW-Authenticate: Bearer`.
pub async fn require_auth(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if auth.token.admits(headers) {
        return authenticated(next.run(request).await);
    }
    let path = request.uri().path();
    let dashboard = path != super::MCP_PATH;
    if dashboard && let Some(csrf) = auth.session(headers) {
        let reads = matches!(*request.method(), Method::GET | Method::HEAD);
        if !reads && let Err(why) = change_allowed(headers, &csrf) {
            tracing::warn!(method = %request.method(), path, "403: {why}");
            return (StatusCode::FORBIDDEN, format!("Forbidden: {why}\n")).into_response();
        }
        return authenticated(next.run(request).await);
    }
    if path == "/"
        && request.method() == Method::GET
        && query_token(request.uri().query()).is_some_and(|t| auth.token.matches(t))
    {
        return open_session(&auth);
    }
    let why = if headers.contains_key(header::AUTHORIZATION) {
        "wrong or malformed bearer token"
    } else if dashboard {
        "no Authorization header or session cookie"
    } else {
        "no Authorization header"
    };
    let page = path == "/" && request.method() == Method::GET;
    tracing::info!(method = %request.method(), path, "401: {why}");
    if page {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Bearer"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            format!("Open this page as /?token=TOKEN once: the token is in {TOKEN_ENV}, or in the `{TOKEN_FILE}` file of the fleet's data directory (the server's log says where).\n"),
        )
            .into_response();
    }
    unauthorized()
}

fn authenticated(mut response: Response) -> Response {
    response.extensions_mut().insert(Authenticated);
    response
}

/// Whether a change resting on the session cookie may go ahead: it needs an `Origin`
/// (already checked by the guard) and the session's CSRF value.
fn change_allowed(headers: &HeaderMap, csrf: &str) -> Result<(), &'static str> {
    if !headers.contains_key(header::ORIGIN) {
        return Err(
            "a change made with the session cookie must come from the dashboard page (no Origin header)",
        );
    }
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !presented.is_some_and(|p| same(p, csrf)) {
        return Err(
            "a change made with the session cookie needs the dashboard page's CSRF value (X-Flotilla-Csrf); open the dashboard again as /?token=TOKEN",
        );
    }
    Ok(())
}

/// `GET /?token=<the token>`: a new session, and a redirect that drops the token from
/// the address bar (and the history) and hands the page its CSRF value in the
/// fragment.
fn open_session(auth: &Auth) -> Response {
    match auth.open_session() {
        Ok((cookie, csrf)) => authenticated(
            (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, format!("/#csrf={csrf}")),
                    (header::SET_COOKIE, cookie),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!("cannot open a dashboard session: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot open a dashboard session: {e}\n"),
            )
                .into_response()
        }
    }
}

pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn admits_only_the_exact_bearer_token() {
        let token = Token::new("0123456789abcdef0123", "test").unwrap();
        assert!(token.admits(&headers("Bearer 0123456789abcdef0123")));
        assert!(token.admits(&headers("bearer  0123456789abcdef0123 ")));
        assert!(!token.admits(&headers("Bearer 0123456789abcdef012")));
        assert!(!token.admits(&headers("Bearer 0123456789abcdef01234")));
        assert!(!token.admits(&headers("Basic 0123456789abcdef0123")));
        assert!(!token.admits(&headers("Bearer")));
        assert!(!token.admits(&headers("0123456789abcdef0123")));
        assert!(!token.admits(&HeaderMap::new()));
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused() {
        assert!(matches!(
            Token::new("short", "x"),
            Err(TokenError::TooShort(5))
        ));
        assert!(matches!(
            Token::new("0123456789 abcdef0123", "x"),
            Err(TokenError::BadChars { .. })
        ));
    }

    #[test]
    fn generated_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = Token::load_or_generate(dir.path()).unwrap();
        let path = dir.path().join(TOKEN_FILE);
        assert_eq!(source, TokenSource::Generated(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        assert_eq!(first.0.len(), 2 * TOKEN_BYTES);
        let (second, source) = Token::load_or_generate(dir.path()).unwrap();
        assert_eq!(source, TokenSource::File(path.clone()));
        assert_eq!(first.0, second.0);
        std::fs::write(&path, "").unwrap();
        let err = Token::load_or_generate(dir.path()).unwrap_err().to_string();
        assert!(err.contains("delete it"), "{err}");
        // Debug output never shows the secret.
        assert!(!format!("{first:?}").contains(&*first.0));
    }
}
